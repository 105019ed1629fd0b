import CSQLite

/// The database handle and its prepared statements. Not thread-safe: only used under
/// `SQLiteLogStorage.connection`'s lock.
final class SQLiteLogDatabase {
    private let db: SQLiteConnection
    private let statements: Statements
    private let path: String
    private let images: SQLiteSnapshotFile?
    private var closed = false
    /// Entries up to this index are covered by the snapshot and still to be deleted, a batch per
    /// save: deleting 50,000 rows in the snapshot's own transaction stalled the Raft loop ~100 ms.
    /// Until then `load` skips them.
    private var trimThrough: UInt64 = 0
    static let trimBatch = 2_000

    init(path: String, images: SQLiteSnapshotFile?) throws {
        self.path = path
        self.images = images
        let db = try SQLiteConnection(path: path)
        do {
            try Self.setUp(db, path: path, wal: images != nil)
            statements = try Statements(db)
        } catch {
            db.close()
            throw error
        }
        self.db = db
    }

    /// WAL pages past which the writer checkpoints itself (24 MiB at 4 KiB pages); the
    /// checkpointer's RESTART threshold is lower, so normally it never comes to that.
    static let walBackstopPages = 6_144

    /// `wal`: a file database, which checkpoints; an in-memory one has no WAL.
    private static func setUp(_ db: SQLiteConnection, path: String, wal: Bool) throws {
        let mode = try db.queryText("PRAGMA journal_mode=WAL")
        // ":memory:" databases cannot use WAL; anything else that refuses it breaks our durability story.
        guard mode == "wal" || mode == "memory" else {
            throw StorageError.io("cannot enable WAL on \(path): journal_mode is \(mode ?? "unknown")")
        }
        try db.exec("PRAGMA synchronous=FULL")
        // Checkpoints run off the Raft loop (SQLiteCheckpointer, from 4,096 frames). Should it fall
        // behind a writer that outruns it (a busy machine, a fast disk), this connection's own
        // commit checkpoints past `walBackstopPages`, so the WAL stays bounded either way; that
        // costs a save a checkpoint's time, which the checkpointer otherwise spares it. An
        // in-memory database has no WAL.
        if wal { try db.exec("PRAGMA wal_autocheckpoint=\(Self.walBackstopPages)") }
        try db.exec("""
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
        try? db.exec("ALTER TABLE snapshot ADD COLUMN external INTEGER NOT NULL DEFAULT 0")
    }

    /// Prepared once in `init` and reused (reset after each use): preparing costs about as much as
    /// executing for these tiny statements.
    private struct Statements {
        let begin, beginRead, commit, rollback: SQLiteStatement
        let insertEntry, deleteEntriesFrom, deleteEntriesThrough, deleteAllEntries, selectTermAt: SQLiteStatement
        let selectSnapshotIndex, replaceSnapshot, replaceHardState: SQLiteStatement
        let selectHardState, selectSnapshot, selectEntries: SQLiteStatement
        /// Every statement above, for `finalize`.
        private let all: [SQLiteStatement]

        init(_ db: SQLiteConnection) throws {
            var prepared: [SQLiteStatement] = []
            func prepare(_ sql: String) throws -> SQLiteStatement {
                let stmt = try db.prepare(sql)
                prepared.append(stmt)
                return stmt
            }
            do {
                begin = try prepare("BEGIN IMMEDIATE")
                beginRead = try prepare("BEGIN")
                commit = try prepare("COMMIT")
                rollback = try prepare("ROLLBACK")
                insertEntry = try prepare("INSERT INTO entries(idx, term, kind, data) VALUES (?1, ?2, ?3, ?4)")
                deleteEntriesFrom = try prepare("DELETE FROM entries WHERE idx >= ?1")
                deleteEntriesThrough = try prepare(
                    "DELETE FROM entries WHERE idx IN (SELECT idx FROM entries WHERE idx <= ?1 ORDER BY idx LIMIT \(SQLiteLogDatabase.trimBatch))")
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
            } catch {
                for stmt in prepared { stmt.finalize() }
                throw error
            }
            all = prepared
        }

        func finalize() {
            for stmt in all { stmt.finalize() }
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        statements.finalize()
        // All statements are finalized, so close_v2 closes at once (it would otherwise defer).
        db.close()
    }

    // MARK: save

    /// The stored snapshot's index, 0 when there is none.
    func snapshotIndex() throws -> UInt64 {
        try statements.selectSnapshotIndex.queryUInt64() ?? 0
    }

    /// Returns the index of the snapshot it stored, if any.
    func save(_ batch: PersistBatch, stagedIndex: UInt64?) throws -> UInt64? {
        let s = statements
        try checkIndexes(batch)
        try s.begin.step()
        var saved: UInt64?
        do {
            if let snap = batch.snapshot, try saveSnapshot(snap, staged: stagedIndex == snap.metadata.index) {
                saved = snap.metadata.index
            }
            if trimThrough > 0 {
                s.deleteEntriesThrough.bind(1, trimThrough)
                try s.deleteEntriesThrough.step()
                if db.changes < Self.trimBatch { trimThrough = 0 }
            }
            if let first = batch.entries.first {
                s.deleteEntriesFrom.bind(1, first.index)
                try s.deleteEntriesFrom.step()
                for entry in batch.entries {
                    try insert(entry)
                }
            }
            if let hs = batch.hardState {
                s.replaceHardState.bind(1, hs.term)
                s.replaceHardState.bind(2, hs.vote)
                s.replaceHardState.bind(3, hs.commit)
                try s.replaceHardState.step()
            }
            try s.commit.step()
            return saved
        } catch {
            // Undo the partial batch so the database holds none of it. ROLLBACK can itself fail if
            // SQLite already rolled back (e.g. after SQLITE_FULL); the original error is what matters.
            if db.inTransaction {
                _ = try? s.rollback.step()
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
        let s = statements
        let stored: UInt64 = try s.selectSnapshotIndex.queryUInt64() ?? 0
        // An older or equal snapshot is stale (e.g. a duplicate InstallSnapshot): ignore it.
        guard snap.metadata.index > stored else { return false }
        s.selectTermAt.bind(1, snap.metadata.index)
        let termAtIndex = try s.selectTermAt.queryUInt64()
        if termAtIndex == snap.metadata.term {
            // The log agrees with the snapshot up to its index: keep the suffix (Raft §7). The
            // covered entries go a batch per save from now on (`trimThrough`).
            trimThrough = snap.metadata.index
        } else {
            // The snapshot replaces a log that diverges or is too short: drop all of it.
            try s.deleteAllEntries.step()
        }
        s.replaceSnapshot.bind(1, snap.metadata.index)
        s.replaceSnapshot.bind(2, snap.metadata.term)
        try s.replaceSnapshot.bind(3, encodeIDs(snap.metadata.confState.voters))
        try s.replaceSnapshot.bind(4, encodeIDs(snap.metadata.confState.learners))
        try s.replaceSnapshot.bind(5, staged ? [] : snap.data)
        s.replaceSnapshot.bind(6, Int64(staged ? 1 : 0))
        try s.replaceSnapshot.step()
        return true
    }

    private func insert(_ entry: Entry) throws {
        let s = statements
        s.insertEntry.bind(1, entry.index)
        s.insertEntry.bind(2, entry.term)
        s.insertEntry.bind(3, Int64(entry.kind.rawValue))
        try s.insertEntry.bind(4, entry.data)
        try s.insertEntry.step(clearBindings: false)
    }

    // MARK: load

    func load() throws -> PersistedState {
        let s = statements
        // One read transaction so the three reads see the same committed state.
        try s.beginRead.step()
        defer {
            // Ending the read transaction only fails if something is badly wrong; then roll back so
            // the next save's BEGIN IMMEDIATE does not find a transaction still open.
            if db.inTransaction, (try? s.commit.step()) == nil {
                _ = try? s.rollback.step()
            }
        }
        var state = PersistedState()

        defer { s.selectHardState.reset(clearBindings: false) }
        if try s.selectHardState.stepRow() {
            try s.selectHardState.expectTypes([SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_INTEGER], table: "hard_state")
            state.hardState = HardState(
                term: s.selectHardState.uint64(0), vote: s.selectHardState.uint64(1), commit: s.selectHardState.uint64(2))
        }

        defer { s.selectSnapshot.reset(clearBindings: false) }
        if try s.selectSnapshot.stepRow() {
            try s.selectSnapshot.expectTypes(
                [SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_BLOB, SQLITE_BLOB, SQLITE_BLOB, SQLITE_INTEGER], table: "snapshot")
            guard let voters = decodeIDs(s.selectSnapshot.blob(2)), let learners = decodeIDs(s.selectSnapshot.blob(3)) else {
                throw StorageError.corrupt("snapshot member list length is not a multiple of 8")
            }
            let index: UInt64 = s.selectSnapshot.uint64(0)
            guard index > 0 else { throw StorageError.corrupt("snapshot row with index 0") }
            var data = s.selectSnapshot.blob(4)
            if s.selectSnapshot.int64(5) == 1 {
                guard let staged = try images?.get(index: index) else {
                    throw StorageError.corrupt("snapshot \(index) refers to an image missing from \(images?.path ?? "(none)")")
                }
                data = staged
            }
            state.snapshot = Snapshot(
                metadata: SnapshotMetadata(
                    index: index, term: s.selectSnapshot.uint64(1),
                    confState: ConfState(voters: voters, learners: learners)),
                data: data)
        }

        defer { s.selectEntries.reset() }
        // Entries the snapshot covers may still await trimming; they are not part of the log.
        s.selectEntries.bind(1, state.snapshot.metadata.index)
        trimThrough = state.snapshot.metadata.index
        var expected = state.snapshot.metadata.index &+ 1
        while try s.selectEntries.stepRow() {
            try s.selectEntries.expectTypes([SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_BLOB], table: "entries")
            let index: UInt64 = s.selectEntries.uint64(0)
            guard index == expected else {
                throw StorageError.corrupt(
                    "log is not contiguous: expected entry \(expected), found \(index) (snapshot index \(state.snapshot.metadata.index))")
            }
            let rawKind = s.selectEntries.int64(2)
            guard let kindByte = UInt8(exactly: rawKind), let kind = EntryKind(rawValue: kindByte) else {
                throw StorageError.corrupt("entry \(index) has unknown kind \(rawKind)")
            }
            state.entries.append(Entry(term: s.selectEntries.uint64(1), index: index, kind: kind, data: s.selectEntries.blob(3)))
            expected = index &+ 1
        }
        return state
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
