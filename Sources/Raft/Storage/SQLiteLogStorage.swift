import CSQLite
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
    private let connection: Mutex<Connection?>
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
        let conn = try Connection(path: path, images: images)
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

// MARK: - Connection

/// SQLite's `SQLITE_TRANSIENT`: tells `sqlite3_bind_blob` to copy the bytes before it returns, because
/// the Swift array's buffer is only valid inside `withUnsafeBytes`. The C macro `((sqlite3_destructor_type)-1)`
/// is not imported into Swift, so it is rebuilt here.
private var sqliteTransient: sqlite3_destructor_type {
    unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
}

/// The database handle and its prepared statements. Not thread-safe: only used under
/// `SQLiteLogStorage.connection`'s lock.
private final class Connection {
    private var db: OpaquePointer?
    private let path: String
    private let images: SQLiteSnapshotFile?
    /// Entries up to this index are covered by the snapshot and still to be deleted, a batch per
    /// save: deleting 50,000 rows in the snapshot's own transaction stalled the Raft loop ~100 ms.
    /// Until then `load` skips them.
    private var trimThrough: UInt64 = 0
    static let trimBatch = 2_000

    // Prepared once in `init` and reused (reset after each use): preparing costs about as much as
    // executing for these tiny statements.
    private var begin: OpaquePointer?
    private var beginRead: OpaquePointer?
    private var commit: OpaquePointer?
    private var rollback: OpaquePointer?
    private var insertEntry: OpaquePointer?
    private var deleteEntriesFrom: OpaquePointer?
    private var deleteEntriesThrough: OpaquePointer?
    private var deleteAllEntries: OpaquePointer?
    private var selectTermAt: OpaquePointer?
    private var selectSnapshotIndex: OpaquePointer?
    private var replaceSnapshot: OpaquePointer?
    private var replaceHardState: OpaquePointer?
    private var selectHardState: OpaquePointer?
    private var selectSnapshot: OpaquePointer?
    private var selectEntries: OpaquePointer?

    init(path: String, images: SQLiteSnapshotFile?) throws {
        self.path = path
        self.images = images
        db = try openSQLite(path)
        do {
            try setUp()
        } catch {
            close()
            throw error
        }
    }

    /// WAL pages past which the writer checkpoints itself (24 MiB at 4 KiB pages); the
    /// checkpointer's RESTART threshold is lower, so normally it never comes to that.
    static let walBackstopPages = 6_144

    private func setUp() throws {
        let mode = try queryText("PRAGMA journal_mode=WAL")
        // ":memory:" databases cannot use WAL; anything else that refuses it breaks our durability story.
        guard mode == "wal" || mode == "memory" else {
            throw StorageError.io("cannot enable WAL on \(path): journal_mode is \(mode ?? "unknown")")
        }
        try exec("PRAGMA synchronous=FULL")
        // Checkpoints run off the Raft loop (SQLiteCheckpointer, from 4,096 frames). Should it fall
        // behind a writer that outruns it (a busy machine, a fast disk), this connection's own
        // commit checkpoints past `walBackstopPages`, so the WAL stays bounded either way; that
        // costs a save a checkpoint's time, which the checkpointer otherwise spares it. An
        // in-memory database has no WAL.
        if images != nil { try exec("PRAGMA wal_autocheckpoint=\(Self.walBackstopPages)") }
        try exec("""
            CREATE TABLE IF NOT EXISTS entries(
                idx INTEGER PRIMARY KEY,
                term INTEGER NOT NULL,
                kind INTEGER NOT NULL,
                data BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS hard_state(
                id INTEGER PRIMARY KEY CHECK (id = 0),
                term INTEGER NOT NULL,
                vote INTEGER NOT NULL,
                commit_index INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS snapshot(
                id INTEGER PRIMARY KEY CHECK (id = 0),
                idx INTEGER NOT NULL,
                term INTEGER NOT NULL,
                voters BLOB NOT NULL,
                learners BLOB NOT NULL,
                data BLOB NOT NULL
            );
            """)
        // Databases made before snapshot images were staged lack the column; adding it twice fails,
        // which is fine: the statements below need it and fail loudly if it is really missing.
        try? exec("ALTER TABLE snapshot ADD COLUMN external INTEGER NOT NULL DEFAULT 0")
        begin = try prepare("BEGIN IMMEDIATE")
        beginRead = try prepare("BEGIN")
        commit = try prepare("COMMIT")
        rollback = try prepare("ROLLBACK")
        insertEntry = try prepare("INSERT INTO entries(idx, term, kind, data) VALUES (?1, ?2, ?3, ?4)")
        deleteEntriesFrom = try prepare("DELETE FROM entries WHERE idx >= ?1")
        deleteEntriesThrough = try prepare(
            "DELETE FROM entries WHERE idx IN (SELECT idx FROM entries WHERE idx <= ?1 ORDER BY idx LIMIT \(Self.trimBatch))")
        deleteAllEntries = try prepare("DELETE FROM entries")
        selectTermAt = try prepare("SELECT term FROM entries WHERE idx = ?1")
        selectSnapshotIndex = try prepare("SELECT idx FROM snapshot WHERE id = 0")
        replaceSnapshot = try prepare(
            "INSERT OR REPLACE INTO snapshot(id, idx, term, voters, learners, data, external) VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6)")
        replaceHardState = try prepare(
            "INSERT OR REPLACE INTO hard_state(id, term, vote, commit_index) VALUES (0, ?1, ?2, ?3)")
        selectHardState = try prepare("SELECT term, vote, commit_index FROM hard_state WHERE id = 0")
        selectSnapshot = try prepare("SELECT idx, term, voters, learners, data, external FROM snapshot WHERE id = 0")
        selectEntries = try prepare("SELECT idx, term, kind, data FROM entries WHERE idx > ?1 ORDER BY idx")
    }

    func close() {
        for stmt in [begin, beginRead, commit, rollback, insertEntry, deleteEntriesFrom, deleteEntriesThrough,
                     deleteAllEntries, selectTermAt, selectSnapshotIndex, replaceSnapshot, replaceHardState,
                     selectHardState, selectSnapshot, selectEntries] {
            sqlite3_finalize(stmt) // a no-op on nil
        }
        begin = nil; beginRead = nil; commit = nil; rollback = nil; insertEntry = nil
        deleteEntriesFrom = nil; deleteEntriesThrough = nil; deleteAllEntries = nil; selectTermAt = nil
        selectSnapshotIndex = nil; replaceSnapshot = nil; replaceHardState = nil
        selectHardState = nil; selectSnapshot = nil; selectEntries = nil
        // All statements are finalized, so close_v2 closes at once (it would otherwise defer).
        sqlite3_close_v2(db)
        db = nil
    }

    // MARK: save

    /// The stored snapshot's index, 0 when there is none.
    func snapshotIndex() throws -> UInt64 {
        try queryUInt64(selectSnapshotIndex) ?? 0
    }

    /// Returns the index of the snapshot it stored, if any.
    func save(_ batch: PersistBatch, stagedIndex: UInt64?) throws -> UInt64? {
        try checkIndexes(batch)
        try step(begin)
        var saved: UInt64?
        do {
            if let snap = batch.snapshot, try saveSnapshot(snap, staged: stagedIndex == snap.metadata.index) {
                saved = snap.metadata.index
            }
            if trimThrough > 0 {
                bind(deleteEntriesThrough, 1, trimThrough)
                try step(deleteEntriesThrough)
                if sqlite3_changes(db) < Self.trimBatch { trimThrough = 0 }
            }
            if let first = batch.entries.first {
                bind(deleteEntriesFrom, 1, first.index)
                try step(deleteEntriesFrom)
                for entry in batch.entries {
                    try insert(entry)
                }
            }
            if let hs = batch.hardState {
                bind(replaceHardState, 1, hs.term)
                bind(replaceHardState, 2, hs.vote)
                bind(replaceHardState, 3, hs.commit)
                try step(replaceHardState)
            }
            try step(commit)
            return saved
        } catch {
            // Undo the partial batch so the database holds none of it. ROLLBACK can itself fail if
            // SQLite already rolled back (e.g. after SQLITE_FULL); the original error is what matters.
            if sqlite3_get_autocommit(db) == 0 {
                _ = try? step(rollback)
            }
            throw error
        }
    }

    /// Rejects indexes SQLite's signed integers would mis-order (see the class documentation).
    private func checkIndexes(_ batch: PersistBatch) throws {
        let limit = UInt64(Int64.max)
        if let snap = batch.snapshot, snap.metadata.index > limit {
            throw StorageError.io("snapshot index \(snap.metadata.index) exceeds \(limit)")
        }
        if let last = batch.entries.last, last.index > limit || batch.entries[0].index > limit {
            throw StorageError.io("entry index exceeds \(limit)")
        }
    }

    /// Stores `snap` unless it is stale; `staged`: its image is already in the images file.
    private func saveSnapshot(_ snap: Snapshot, staged: Bool) throws -> Bool {
        let stored: UInt64 = try queryUInt64(selectSnapshotIndex) ?? 0
        // An older or equal snapshot is stale (e.g. a duplicate InstallSnapshot): ignore it.
        guard snap.metadata.index > stored else { return false }
        bind(selectTermAt, 1, snap.metadata.index)
        let termAtIndex = try queryUInt64(selectTermAt)
        if termAtIndex == snap.metadata.term {
            // The log agrees with the snapshot up to its index: keep the suffix (Raft §7). The
            // covered entries go a batch per save from now on (`trimThrough`).
            trimThrough = snap.metadata.index
        } else {
            // The snapshot replaces a log that diverges or is too short: drop all of it.
            try step(deleteAllEntries)
        }
        bind(replaceSnapshot, 1, snap.metadata.index)
        bind(replaceSnapshot, 2, snap.metadata.term)
        try bind(replaceSnapshot, 3, encodeIDs(snap.metadata.confState.voters))
        try bind(replaceSnapshot, 4, encodeIDs(snap.metadata.confState.learners))
        try bind(replaceSnapshot, 5, staged ? [] : snap.data)
        sqlite3_bind_int64(replaceSnapshot, 6, staged ? 1 : 0)
        try step(replaceSnapshot)
        return true
    }

    private func insert(_ entry: Entry) throws {
        bind(insertEntry, 1, entry.index)
        bind(insertEntry, 2, entry.term)
        sqlite3_bind_int64(insertEntry, 3, Int64(entry.kind.rawValue))
        try bind(insertEntry, 4, entry.data)
        try step(insertEntry, clearBindings: false)
    }

    // MARK: load

    func load() throws -> PersistedState {
        // One read transaction so the three reads see the same committed state.
        try step(beginRead)
        defer {
            // Ending the read transaction only fails if something is badly wrong; then roll back so
            // the next save's BEGIN IMMEDIATE does not find a transaction still open.
            if sqlite3_get_autocommit(db) == 0, (try? step(commit)) == nil {
                _ = try? step(rollback)
            }
        }
        var state = PersistedState()

        defer { sqlite3_reset(selectHardState) }
        if try stepRow(selectHardState) {
            try expectTypes(selectHardState, [SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_INTEGER], table: "hard_state")
            state.hardState = HardState(
                term: column(selectHardState, 0), vote: column(selectHardState, 1), commit: column(selectHardState, 2))
        }

        defer { sqlite3_reset(selectSnapshot) }
        if try stepRow(selectSnapshot) {
            try expectTypes(
                selectSnapshot, [SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_BLOB, SQLITE_BLOB, SQLITE_BLOB, SQLITE_INTEGER], table: "snapshot")
            guard let voters = decodeIDs(blob(selectSnapshot, 2)), let learners = decodeIDs(blob(selectSnapshot, 3)) else {
                throw StorageError.corrupt("snapshot member list length is not a multiple of 8")
            }
            let index: UInt64 = column(selectSnapshot, 0)
            guard index > 0 else { throw StorageError.corrupt("snapshot row with index 0") }
            var data = blob(selectSnapshot, 4)
            if sqlite3_column_int64(selectSnapshot, 5) == 1 {
                guard let staged = try images?.get(index: index) else {
                    throw StorageError.corrupt("snapshot \(index) refers to an image missing from \(images?.path ?? "(none)")")
                }
                data = staged
            }
            state.snapshot = Snapshot(
                metadata: SnapshotMetadata(
                    index: index, term: column(selectSnapshot, 1),
                    confState: ConfState(voters: voters, learners: learners)),
                data: data)
        }

        defer { sqlite3_reset(selectEntries); sqlite3_clear_bindings(selectEntries) }
        // Entries the snapshot covers may still await trimming; they are not part of the log.
        bind(selectEntries, 1, state.snapshot.metadata.index)
        trimThrough = state.snapshot.metadata.index
        var expected = state.snapshot.metadata.index &+ 1
        while try stepRow(selectEntries) {
            try expectTypes(selectEntries, [SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_BLOB], table: "entries")
            let index: UInt64 = column(selectEntries, 0)
            guard index == expected else {
                throw StorageError.corrupt(
                    "log is not contiguous: expected entry \(expected), found \(index) (snapshot index \(state.snapshot.metadata.index))")
            }
            let rawKind = sqlite3_column_int64(selectEntries, 2)
            guard let kindByte = UInt8(exactly: rawKind), let kind = EntryKind(rawValue: kindByte) else {
                throw StorageError.corrupt("entry \(index) has unknown kind \(rawKind)")
            }
            state.entries.append(Entry(term: column(selectEntries, 1), index: index, kind: kind, data: blob(selectEntries, 3)))
            expected = index &+ 1
        }
        return state
    }

    private func expectTypes(_ stmt: OpaquePointer?, _ types: [Int32], table: String) throws {
        for (i, type) in types.enumerated() where sqlite3_column_type(stmt, Int32(i)) != type {
            throw StorageError.corrupt("\(table) row has column \(i) of SQLite type \(sqlite3_column_type(stmt, Int32(i))), expected \(type)")
        }
    }

    // MARK: SQLite helpers

    private var errorMessage: String {
        db.map { String(cString: sqlite3_errmsg($0)) } ?? "database is closed"
    }

    private func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        defer { sqlite3_free(err) }
        guard rc == SQLITE_OK else {
            throw StorageError.io("\(path): \(err.map { String(cString: $0) } ?? errorMessage)")
        }
    }

    private func queryText(_ sql: String) throws -> String? {
        let stmt = try prepare(sql)
        defer { sqlite3_finalize(stmt) }
        guard try stepRow(stmt), let text = sqlite3_column_text(stmt, 0) else { return nil }
        return String(cString: text)
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw StorageError.io("\(path): cannot prepare \(sql): \(errorMessage)")
        }
        return stmt
    }

    /// Runs a statement that returns no rows, then resets it for reuse. Bindings are cleared too
    /// (releasing copied blobs) unless the caller rebinds every parameter each time anyway, as the
    /// per-entry insert does, where skipping it is measurably faster.
    private func step(_ stmt: OpaquePointer?, clearBindings: Bool = true) throws {
        defer {
            sqlite3_reset(stmt)
            if clearBindings { sqlite3_clear_bindings(stmt) }
        }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else {
            throw StorageError.io("\(path): \(errorMessage)")
        }
    }

    /// Advances a query; true when a row is available. The caller resets the statement.
    private func stepRow(_ stmt: OpaquePointer?) throws -> Bool {
        switch sqlite3_step(stmt) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw StorageError.io("\(path): \(errorMessage)")
        }
    }

    /// Reads the first column of a one-row query as a `UInt64`; nil when there is no row.
    private func queryUInt64(_ stmt: OpaquePointer?) throws -> UInt64? {
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        guard try stepRow(stmt) else { return nil }
        return column(stmt, 0)
    }

    private func bind(_ stmt: OpaquePointer?, _ index: Int32, _ value: UInt64) {
        sqlite3_bind_int64(stmt, index, Int64(bitPattern: value))
    }

    /// Binds a blob; throws when SQLite refuses it (e.g. larger than its limit), rather than storing
    /// a wrong value.
    private func bind(_ stmt: OpaquePointer?, _ index: Int32, _ bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { buf in
            if let base = buf.baseAddress, buf.count > 0 {
                // blob64: a 32-bit length would trap on a (pathological) blob over 2 GiB.
                sqlite3_bind_blob64(stmt, index, base, sqlite3_uint64(buf.count), sqliteTransient)
            } else {
                // A nil pointer would bind SQL NULL, which the NOT NULL columns reject.
                sqlite3_bind_zeroblob(stmt, index, 0)
            }
        }
        guard rc == SQLITE_OK else {
            throw StorageError.io("\(path): cannot bind a blob of \(bytes.count) bytes: \(String(cString: sqlite3_errstr(rc)))")
        }
    }

    private func column(_ stmt: OpaquePointer?, _ index: Int32) -> UInt64 {
        UInt64(bitPattern: sqlite3_column_int64(stmt, index))
    }

    private func blob(_ stmt: OpaquePointer?, _ index: Int32) -> [UInt8] {
        // Ask for the pointer before the size, as SQLite documents.
        guard let base = sqlite3_column_blob(stmt, index) else { return [] }
        let count = Int(sqlite3_column_bytes(stmt, index))
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }
}

/// Node ids as little-endian `UInt64`s back to back.
private func encodeIDs(_ ids: [NodeID]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(ids.count * 8)
    for id in ids {
        withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
    }
    return out
}

private func decodeIDs(_ bytes: [UInt8]) -> [NodeID]? {
    guard bytes.count % 8 == 0 else { return nil }
    return stride(from: 0, to: bytes.count, by: 8).map { start in
        var id: UInt64 = 0
        for i in 0..<8 { id |= UInt64(bytes[start + i]) << (8 * UInt64(i)) }
        return id
    }
}
