import Synchronization

/// Everything a server persisted, as read back when it starts.
public struct PersistedState: Sendable, Equatable {
    public var hardState: HardState
    /// The latest snapshot, or an empty one when the log was never compacted.
    public var snapshot: Snapshot
    /// The entries after `snapshot.metadata.index`, contiguous and in index order.
    public var entries: [Entry]

    public init(hardState: HardState = HardState(), snapshot: Snapshot = Snapshot(), entries: [Entry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }
}

/// One unit of persistence, written atomically: a crash leaves either all of it or none of it.
public struct PersistBatch: Sendable, Equatable {
    /// A snapshot received from the leader (it replaces the whole log) or taken locally (it replaces
    /// the entries up to its index). Applied first.
    public var snapshot: Snapshot?
    /// Entries to append. Any stored entry at or after `entries.first!.index` is removed first, because
    /// a leader's entries win over conflicting ones (Raft §5.3).
    public var entries: [Entry]
    /// The new term, vote and commit index, if they changed.
    public var hardState: HardState?

    public init(snapshot: Snapshot? = nil, entries: [Entry] = [], hardState: HardState? = nil) {
        self.snapshot = snapshot
        self.entries = entries
        self.hardState = hardState
    }

    public var isEmpty: Bool { snapshot == nil && entries.isEmpty && hardState == nil }
}

/// Durable storage of one server's Raft log, hard state and latest snapshot.
///
/// The core never reads storage: it is handed `load()`'s result at start and keeps the unsnapshotted
/// log in memory. Storage only has to make each `save` durable before it returns, so that nothing a
/// server acknowledged is lost in a crash.
public protocol LogStorage: Sendable {
    /// Reads back what was saved; an empty state for a new server.
    func load() throws -> PersistedState
    /// Persists `batch` atomically and durably (see `PersistBatch` for the order of its parts).
    func save(_ batch: PersistBatch) throws
    /// Stores the image of a snapshot about to be saved at `index`, durably, from any task. The
    /// node calls it off its loop, so that the `save` of the snapshot, on the loop, need not write
    /// a large image. Storage without a separate place for images does nothing here.
    func stageSnapshot(index: UInt64, data: [UInt8]) throws
}

extension LogStorage {
    public func stageSnapshot(index: UInt64, data: [UInt8]) throws {}
}

/// Typed failures of a storage backend.
public enum StorageError: Error, Sendable, Equatable {
    /// The backend could not open, read or write; `message` says what failed.
    case io(String)
    /// The stored data is inconsistent (a gap in the log, an unreadable row).
    case corrupt(String)
}

extension PersistedState {
    /// Applies `batch` in memory with the semantics every `LogStorage` must have.
    /// `MemoryLogStorage` uses it directly; durable backends are tested against it.
    public mutating func apply(_ batch: PersistBatch) {
        if let snap = batch.snapshot, snap.metadata.index > snapshot.metadata.index {
            let idx = snap.metadata.index
            if let pos = entries.firstIndex(where: { $0.index == idx }), entries[pos].term == snap.metadata.term {
                // The log agrees with the snapshot up to its index: keep what follows (Raft §7).
                entries.removeFirst(pos + 1)
            } else {
                entries.removeAll()
            }
            snapshot = snap
        }
        if let first = batch.entries.first {
            entries.removeAll { $0.index >= first.index }
            entries.append(contentsOf: batch.entries)
        }
        if let hs = batch.hardState { hardState = hs }
    }
}

/// An in-memory `LogStorage` for tests and simulations; a simulated crash keeps what was saved.
public final class MemoryLogStorage: LogStorage {
    private let state: Mutex<(PersistedState, Int)>

    public init(_ state: PersistedState = PersistedState()) {
        self.state = Mutex((state, 0))
    }

    /// Number of `save` calls, i.e. of disk syncs a durable backend would have made.
    public var saveCount: Int { state.withLock { $0.1 } }

    public func load() throws -> PersistedState {
        state.withLock { $0.0 }
    }

    public func save(_ batch: PersistBatch) throws {
        state.withLock {
            $0.0.apply(batch)
            $0.1 += 1
        }
    }
}
