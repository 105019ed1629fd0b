import Synchronization

/// A durable `LogStorage` in one SQLite database (`<data-dir>/raft.sqlite`).
///
/// Durability: the database runs in WAL mode with `synchronous=FULL`, and every `save` is one
/// `BEGIN IMMEDIATE ... COMMIT` transaction, so a batch costs exactly one fsync of the WAL and a crash
/// leaves either all of a batch or none of it. Callers should batch (one `save` per Raft `Ready`):
/// the fsync, not the row count, dominates the cost.
///
/// Schema (integers are `UInt64`s stored as their `Int64` bit patterns, because SQLite integers are
/// signed 64-bit):
/// - `entries(idx INTEGER PRIMARY KEY, term, kind, data BLOB)`: the log after the snapshot.
/// - `hard_state(id = 0, term, vote, commit_index)`: at most one row.
/// - `snapshot(id = 0, idx, term, voters, learners, data, external)`: at most one row; the member
///   lists are little-endian `UInt64`s back to back. `external = 1`: the image was staged in
///   `<path>-snapshots` (`SQLiteSnapshotFile`) off the Raft loop and `data` is empty.
///
/// Log indexes are compared in SQL (`DELETE ... WHERE idx >= ?`), so they must stay below `2^63`;
/// `save` rejects larger ones rather than silently mis-ordering them.
///
/// Thread safety: the class is `@unchecked Sendable` because it owns a raw `sqlite3*` and prepared
/// statements, which the compiler cannot see as safe. They live inside a `Mutex`, and every use of
/// them (`load`, `save`, `close`, `deinit`) takes that lock, so calls from any number of threads or
/// tasks are serialised. The connection is opened with `SQLITE_OPEN_NOMUTEX` because that lock
/// already excludes concurrent use and SQLite's own would be redundant.
public final class SQLiteLogStorage: LogStorage, @unchecked Sendable {
    private let connection: Mutex<SQLiteLogDatabase?>
    /// Where staged snapshot images go; nil for an in-memory database.
    private let images: SQLiteSnapshotFile?
    /// Checkpoints the WAL off the caller's thread; nil for an in-memory database.
    private let checkpointer: SQLiteCheckpointer?
    /// The snapshot index the log database refers to (images below it may be pruned).
    private let committedSnapshot = Atomic<UInt64>(0)
    /// The index of the last image staged, which the next snapshot `save` at that index refers to.
    private let stagedSnapshot = Mutex<UInt64?>(nil)

    /// The path the database was opened at.
    public let path: String

    /// Opens the database at `path`, creating it and its tables if needed.
    ///
    /// - Throws: `StorageError.io` when the file cannot be opened or created (missing or unwritable
    ///   directory, not a database) or the schema cannot be set up.
    public init(path: String) throws {
        self.path = path
        let images = path == ":memory:" || path.isEmpty ? nil : try SQLiteSnapshotFile(path: path + "-snapshots")
        let conn = try SQLiteLogDatabase(path: path, images: images)
        let committed = (try? conn.snapshotIndex()) ?? 0
        self.checkpointer = images == nil ? nil : try SQLiteCheckpointer(path: path)
        self.images = images
        self.connection = Mutex(conn)
        committedSnapshot.store(committed, ordering: .relaxed)
    }

    /// Writes a snapshot image to `<path>-snapshots` and syncs it, without the log's lock; the
    /// `save` of the snapshot at `index` that follows then stores only its metadata.
    public func stageSnapshot(index: UInt64, data: [UInt8]) throws {
        guard let images else { return }
        try images.put(index: index, data: data, keepFrom: committedSnapshot.load(ordering: .relaxed))
        stagedSnapshot.withLock { $0 = index }
    }

    deinit {
        checkpointer?.close()
        images?.close()
        connection.withLock { conn in
            conn?.close()
            conn = nil
        }
    }

    /// Finalizes the prepared statements and closes the database. Later `load` or `save` calls throw
    /// `StorageError.io`. Calling it twice is harmless; `deinit` does it too.
    public func close() {
        checkpointer?.close()
        images?.close()
        connection.withLock { conn in
            conn?.close()
            conn = nil
        }
    }

    /// Reads back the hard state, the snapshot and the entries after it.
    ///
    /// - Throws: `StorageError.corrupt` when the entries are not contiguous from just after the
    ///   snapshot index or a row cannot be decoded; `StorageError.io` when SQLite fails.
    public func load() throws -> PersistedState {
        try connection.withLock { conn throws -> PersistedState in
            guard let conn else { throw StorageError.io("SQLiteLogStorage(\(path)) is closed") }
            return try conn.load()
        }
    }

    /// Persists `batch` in one transaction (one fsync), with the semantics of `PersistedState.apply`.
    ///
    /// - Throws: `StorageError.io` with SQLite's message; the transaction is rolled back, so nothing
    ///   of the batch is stored.
    public func save(_ batch: PersistBatch) throws {
        // An empty batch changes nothing: skip the transaction and its fsync.
        if batch.isEmpty { return }
        let staged = batch.snapshot == nil ? nil : stagedSnapshot.withLock { $0 }
        try connection.withLock { conn throws in
            guard let conn else { throw StorageError.io("SQLiteLogStorage(\(path)) is closed") }
            if let saved = try conn.save(batch, stagedIndex: staged) {
                committedSnapshot.store(saved, ordering: .relaxed)
            }
        }
    }
}
