import CSQLite

// The few SQLite calls the storage code makes (the log database, the snapshot images, the
// checkpointer), each failure mapped to a `StorageError` that names the file and SQLite's reason.

/// SQLite's `SQLITE_TRANSIENT`: tells `sqlite3_bind_blob` to copy the bytes before it returns, because
/// the Swift array's buffer is only valid inside `withUnsafeBytes`. The C macro `((sqlite3_destructor_type)-1)`
/// is not imported into Swift, so it is rebuilt here.
private var sqliteTransient: sqlite3_destructor_type {
    unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
}

/// An open `sqlite3*` and the path it was opened at (for error messages).
///
/// A value that does not own the handle: its owner keeps it under a lock, serialises every call
/// (the connection is opened without SQLite's mutex), and calls `close` exactly once.
struct SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    /// Opens a SQLite connection (no SQLite mutex: every user serialises its own calls) with a 5 s
    /// busy timeout, or throws `StorageError.io` naming `path` (and `purpose`) and SQLite's reason.
    init(path: String, create: Bool = true, purpose: String = "") throws {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0)
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            // sqlite3_open_v2 usually returns a handle even on failure; it carries the message and
            // must still be closed.
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(handle)
            throw StorageError.io("cannot open \(path)\(purpose): \(message)")
        }
        // Another connection holding the write lock (a checkpoint, a backup tool) should delay us, not fail us.
        sqlite3_busy_timeout(handle, 5_000)
        self.handle = handle
        self.path = path
    }

    /// SQLite's message for the last failed call on this connection.
    var errorMessage: String { String(cString: sqlite3_errmsg(handle)) }

    /// Whether a transaction is open (SQLite is not in autocommit mode).
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int32 { sqlite3_changes(handle) }

    /// Runs one or more statements that return no rows.
    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &err)
        defer { sqlite3_free(err) }
        guard rc == SQLITE_OK else {
            throw StorageError.io("\(path): \(err.map { String(cString: $0) } ?? errorMessage)")
        }
    }

    /// A prepared statement; the caller finalizes it.
    func prepare(_ sql: String) throws -> SQLiteStatement {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw StorageError.io("\(path): cannot prepare \(sql): \(errorMessage)")
        }
        return SQLiteStatement(handle: stmt, connection: self)
    }

    /// The first column of the first row of `sql` as text; nil when there is no row or it is NULL.
    func queryText(_ sql: String) throws -> String? {
        let stmt = try prepare(sql)
        defer { stmt.finalize() }
        guard try stmt.stepRow(), let text = sqlite3_column_text(stmt.handle, 0) else { return nil }
        return String(cString: text)
    }

    /// Closes the connection; its statements must be finalized first, or it closes only once they are.
    func close() {
        sqlite3_close_v2(handle)
    }
}

/// A prepared statement of a `SQLiteConnection`, reused after a reset. Integers are `UInt64`s stored
/// as their `Int64` bit patterns (SQLite integers are signed 64-bit).
struct SQLiteStatement {
    let handle: OpaquePointer
    let connection: SQLiteConnection

    func finalize() {
        sqlite3_finalize(handle)
    }

    /// Runs a statement that returns no rows, then resets it for reuse. Bindings are cleared too
    /// (releasing copied blobs) unless the caller rebinds every parameter each time anyway, as the
    /// per-entry insert does, where skipping it is measurably faster.
    func step(clearBindings: Bool = true) throws {
        defer { reset(clearBindings: clearBindings) }
        let rc = sqlite3_step(handle)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else {
            throw StorageError.io("\(connection.path): \(connection.errorMessage)")
        }
    }

    /// Advances a query; true when a row is available. The caller resets the statement.
    func stepRow() throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw StorageError.io("\(connection.path): \(connection.errorMessage)")
        }
    }

    func reset(clearBindings: Bool = true) {
        sqlite3_reset(handle)
        if clearBindings { sqlite3_clear_bindings(handle) }
    }

    /// Reads the first column of a one-row query as a `UInt64`, then resets the statement; nil when
    /// there is no row.
    func queryUInt64() throws -> UInt64? {
        defer { reset() }
        guard try stepRow() else { return nil }
        return uint64(0)
    }

    func bind(_ index: Int32, _ value: UInt64) {
        sqlite3_bind_int64(handle, index, Int64(bitPattern: value))
    }

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    /// Binds a blob; throws when SQLite refuses it (e.g. larger than its limit), rather than storing
    /// a wrong value.
    func bind(_ index: Int32, _ bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { buf in
            if let base = buf.baseAddress, buf.count > 0 {
                // blob64: a 32-bit length would trap on a (pathological) blob over 2 GiB.
                sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(buf.count), sqliteTransient)
            } else {
                // A nil pointer would bind SQL NULL, which the NOT NULL columns reject.
                sqlite3_bind_zeroblob(handle, index, 0)
            }
        }
        guard rc == SQLITE_OK else {
            throw StorageError.io(
                "\(connection.path): cannot bind a blob of \(bytes.count) bytes: \(String(cString: sqlite3_errstr(rc)))")
        }
    }

    func uint64(_ index: Int32) -> UInt64 {
        UInt64(bitPattern: sqlite3_column_int64(handle, index))
    }

    func int64(_ index: Int32) -> Int64 {
        sqlite3_column_int64(handle, index)
    }

    func blob(_ index: Int32) -> [UInt8] {
        // Ask for the pointer before the size, as SQLite documents.
        guard let base = sqlite3_column_blob(handle, index) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, index))
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Throws `StorageError.corrupt` unless the current row's columns have these SQLite types.
    func expectTypes(_ types: [Int32], table: String) throws {
        for (i, type) in types.enumerated() where sqlite3_column_type(handle, Int32(i)) != type {
            throw StorageError.corrupt(
                "\(table) row has column \(i) of SQLite type \(sqlite3_column_type(handle, Int32(i))), expected \(type)")
        }
    }
}
