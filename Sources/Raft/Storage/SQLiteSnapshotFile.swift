import CSQLite
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
    private let db: Mutex<OpaquePointer?>
    let path: String

    init(path: String) throws {
        self.path = path
        db = Mutex(try openSQLite(path))
        do {
            try db.withLock { db in
                try Self.exec(db, "PRAGMA journal_mode=WAL", path)
                try Self.exec(db, "PRAGMA synchronous=FULL", path)
                try Self.exec(db, "CREATE TABLE IF NOT EXISTS images(idx INTEGER PRIMARY KEY, data BLOB NOT NULL)", path)
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    func close() {
        db.withLock { db in
            sqlite3_close_v2(db)
            db = nil
        }
    }

    /// Stores `data` as the image at `index` durably, and drops images older than `keepFrom`.
    func put(index: UInt64, data: [UInt8], keepFrom: UInt64) throws {
        try db.withLock { db in
            guard let db else { throw StorageError.io("\(path) is closed") }
            try Self.exec(db, "BEGIN IMMEDIATE", path)
            do {
                try Self.run(db, "INSERT OR REPLACE INTO images(idx, data) VALUES (?1, ?2)", path) { stmt in
                    sqlite3_bind_int64(stmt, 1, Int64(bitPattern: index))
                    _ = data.withUnsafeBytes { bytes in
                        sqlite3_bind_blob64(stmt, 2, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(bytes.count),
                                            unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self))
                    }
                }
                try Self.run(db, "DELETE FROM images WHERE idx < ?1 AND idx <> ?2", path) { stmt in
                    sqlite3_bind_int64(stmt, 1, Int64(bitPattern: keepFrom))
                    sqlite3_bind_int64(stmt, 2, Int64(bitPattern: index))
                }
                try Self.exec(db, "COMMIT", path)
            } catch {
                if sqlite3_get_autocommit(db) == 0 { try? Self.exec(db, "ROLLBACK", path) }
                throw error
            }
        }
    }

    /// The image at `index`, nil when there is none.
    func get(index: UInt64) throws -> [UInt8]? {
        try db.withLock { db in
            guard let db else { throw StorageError.io("\(path) is closed") }
            var stmt: OpaquePointer?
            guard sqlite3_prepare_v2(db, "SELECT data FROM images WHERE idx = ?1", -1, &stmt, nil) == SQLITE_OK else {
                throw StorageError.io("\(path): \(String(cString: sqlite3_errmsg(db)))")
            }
            defer { sqlite3_finalize(stmt) }
            sqlite3_bind_int64(stmt, 1, Int64(bitPattern: index))
            switch sqlite3_step(stmt) {
            case SQLITE_ROW:
                let count = Int(sqlite3_column_bytes(stmt, 0))
                guard count > 0, let pointer = sqlite3_column_blob(stmt, 0) else { return [] }
                return Array(UnsafeRawBufferPointer(start: pointer, count: count))
            case SQLITE_DONE: return nil
            default: throw StorageError.io("\(path): \(String(cString: sqlite3_errmsg(db)))")
            }
        }
    }

    private static func exec(_ db: OpaquePointer?, _ sql: String, _ path: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        defer { sqlite3_free(err) }
        guard rc == SQLITE_OK else { throw StorageError.io("\(path): \(err.map { String(cString: $0) } ?? "error \(rc)")") }
    }

    private static func run(_ db: OpaquePointer, _ sql: String, _ path: String, bind: (OpaquePointer?) -> Void) throws {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw StorageError.io("\(path): cannot prepare \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(stmt) }
        bind(stmt)
        guard sqlite3_step(stmt) == SQLITE_DONE else { throw StorageError.io("\(path): \(String(cString: sqlite3_errmsg(db)))") }
    }
}
