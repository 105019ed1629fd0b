import Raft
import Synchronization

/// The key-value store as the state machine a `RaftNode` replicates.
///
/// `apply` decodes a `Command`, applies it and returns the encoded `Response`; undecodable bytes are
/// answered with an encoded `.failure(.malformed)` and change nothing, so one bad entry cannot stop or
/// split the cluster. The store lives in a `Mutex` because serializable reads come from other tasks
/// while the node applies.
public final class KVStateMachine: RaftStateMachine {
    private let state: Mutex<(store: KeyValueStore, appliedIndex: UInt64)>
    private let onEvents: @Sendable ([WatchEvent]) -> Void
    private let onRestore: @Sendable (_ revision: Int64) -> Void

    /// - Parameters:
    ///   - onEvents: called after each applied command that produced events, in log order and
    ///     outside the lock, so a shell can push them to live watchers.
    ///   - onRestore: called after a snapshot replaced the state, with its revision, outside the lock.
    public init(store: KeyValueStore = KeyValueStore(), onEvents: @escaping @Sendable ([WatchEvent]) -> Void = { _ in },
                onRestore: @escaping @Sendable (_ revision: Int64) -> Void = { _ in }) {
        self.state = Mutex((store, 0))
        self.onEvents = onEvents
        self.onRestore = onRestore
    }

    public func apply(_ command: [UInt8], index: UInt64) -> [UInt8] {
        let applied: Applied
        do {
            let decoded = try Command(decoding: command)
            applied = state.withLock { state in
                state.appliedIndex = index
                return state.store.apply(decoded)
            }
        } catch {
            state.withLock { $0.appliedIndex = index }
            return Response.failure(error).encoded()
        }
        // The node applies from one task at a time, so events still reach the sink in log order.
        if !applied.events.isEmpty { onEvents(applied.events) }
        return applied.response.encoded()
    }

    public func snapshot() -> [UInt8] {
        state.withLock { $0.store.snapshotBytes() }
    }

    /// A copy of the store, encoded when the node calls the closure, off its loop.
    ///
    /// Taking the copy is O(1) (copy-on-write). The live store then gets storage of its own here,
    /// outside the lock: left to the next apply, that copy ran inside the lock and held every read
    /// up for as long (40-330 ms at 100,000 tasks while placing). Only the node's loop applies and
    /// calls this, so no apply can come between the copy and the swap.
    public func snapshotImage() -> @Sendable (inout [UInt8]) -> Void {
        let store = state.withLock { $0.store }
        var live = store
        live.detachStorage()
        state.withLock { $0.store = live }
        return { store.appendSnapshot(to: &$0) }
    }

    public func restore(_ data: [UInt8], index: UInt64) throws {
        // Decode before taking the lock: a bad image leaves the current state untouched.
        let store = try KeyValueStore(snapshot: data)
        state.withLock { $0 = (store, index) }
        onRestore(store.revision)
    }

    /// Decodes the image as `restore` would, and drops it.
    public func validateSnapshot(_ data: [UInt8]) throws {
        _ = try KeyValueStore(snapshot: data)
    }

    /// Runs a read against the current state (serializable read: as of the last applied entry).
    public func read<T: Sendable, E: Error>(_ body: (borrowing KeyValueStore) throws(E) -> T) throws(E) -> T {
        try state.withLock { (state) throws(E) -> T in try body(state.store) }
    }

    /// The index of the last applied log entry (for ReadIndex waits).
    public var appliedIndex: UInt64 { state.withLock { $0.appliedIndex } }

    /// A copy of the current store and the index it was applied up to, taken together.
    public var current: (store: KeyValueStore, appliedIndex: UInt64) { state.withLock { ($0.store, $0.appliedIndex) } }

    /// A copy of the current store (tests, diagnostics).
    public var store: KeyValueStore { state.withLock { $0.store } }
}
