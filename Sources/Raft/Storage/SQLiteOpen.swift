import CSQLite

/// Opens a SQLite connection (no SQLite mutex: every user serialises its own calls) with a 5 s busy
/// timeout, or throws `StorageError.io` naming `path` and SQLite's reason. Shared by the log
/// database, the snapshot images and the checkpointer.
func openSQLite(_ path: String, create: Bool = true, purpose: String = "") throws -> OpaquePointer {
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
    return handle
}
