import Synchronization

/// Snapshot images of `SQLiteLogStorage`, in a database of their own (`<log path>-snapshots`).
///
/// Why a second file: an image of a large state is tens of megabytes. Written into the log's
/// database it held the log's write lock (and the Raft loop) for 150-300 ms per snapshot, and the
/// WAL checkpoint that followed stalled the next appends again. Here the image is written and
/// synced by the task that encoded it, off the loop, with its own connection and lock; the log
/// database then records only the snapshot's metadata and that its image is staged here.
///
/// Rows: `images(idx INTEGER PRIMARY KEY, data BLOB)`. The row the log database refers to is never
/// deleted; older rows are pruned when a newer image is staged.
final class SQLiteSnapshotFile: @unchecked Sendable {
    private let db: Mutex<SQLiteConnection?>
    let path: String

    init(path: String) throws {
        self.path = path
        let connection = try SQLiteConnection(path: path)
        do {
            try connection.exec("PRAGMA journal_mode=WAL")
            try connection.exec("PRAGMA synchronous=FULL")
            try connection.exec("CREATE TABLE IF NOT EXISTS images(idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        } catch {
            connection.close()
            throw error
        }
        db = Mutex(connection)
    }

    deinit { close() }

    func close() {
        db.withLock { db in
            db?.close()
            db = nil
        }
    }

    /// Stores `data` as the image at `index` durably, and drops images older than `keepFrom`.
    func put(index: UInt64, data: [UInt8], keepFrom: UInt64) throws {
        try db.withLock { db in
            guard let db else { throw StorageError.io("\(path) is closed") }
            try db.exec("BEGIN IMMEDIATE")
            do {
                try Self.run(db, "INSERT OR REPLACE INTO images(idx, data) VALUES (?1, ?2)") { stmt in
                    stmt.bind(1, index)
                    try stmt.bind(2, data)
                }
                try Self.run(db, "DELETE FROM images WHERE idx < ?1 AND idx <> ?2") { stmt in
                    stmt.bind(1, keepFrom)
                    stmt.bind(2, index)
                }
                try db.exec("COMMIT")
            } catch {
                if db.inTransaction { try? db.exec("ROLLBACK") }
                throw error
            }
        }
    }

    /// The image at `index`, nil when there is none.
    func get(index: UInt64) throws -> [UInt8]? {
        try db.withLock { db in
            guard let db else { throw StorageError.io("\(path) is closed") }
            let stmt = try db.prepare("SELECT data FROM images WHERE idx = ?1")
            defer { stmt.finalize() }
            stmt.bind(1, index)
            return try stmt.stepRow() ? stmt.blob(0) : nil
        }
    }

    /// Prepares `sql`, binds it and runs it once.
    private static func run(_ db: SQLiteConnection, _ sql: String, bind: (SQLiteStatement) throws -> Void) throws {
        let stmt = try db.prepare(sql)
        defer { stmt.finalize() }
        try bind(stmt)
        try stmt.step(clearBindings: false)
    }
}
