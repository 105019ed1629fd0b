import Synchronization

/// Copies the log database's WAL back into the database from a connection and thread of its own.
///
/// Why: with SQLite's automatic checkpoints, the commit that finds the WAL past 1,000 pages copies
/// them into the database and syncs it before returning, so every few seconds one Raft `save`
/// took 20-50 ms instead of 1-2 (seen with `etcd-bench` puts). Here the log's connection
/// checkpoints only as a backstop, past `SQLiteLogDatabase.walBackstopPages`; this one runs PASSIVE
/// checkpoints, which never block the writer, every `interval`. If the writer outruns them and
/// the WAL passes `restartAbove` frames, a RESTART checkpoint (which briefly holds the writer off)
/// lets the next commit rewind the WAL. The rounds run on a `PeriodicThread`, not a task: a
/// checkpoint blocks on disk for as long as a sync takes.
final class SQLiteCheckpointer: @unchecked Sendable {
    private let db: Mutex<SQLiteConnection?>
    private var rounds: PeriodicThread?
    let path: String
    private let restartAbove: Int32

    init(path: String, interval: Duration = .milliseconds(250), restartAbove: Int32 = 4_096) throws {
        self.path = path
        self.restartAbove = restartAbove
        db = Mutex(try SQLiteConnection(path: path, create: false, purpose: " for checkpoints"))
        rounds = PeriodicThread(interval: interval) { [weak self] in self?.checkpoint() }
    }

    deinit { close() }

    /// One round; errors are left for the next round (the log stays correct without checkpoints,
    /// only its WAL grows).
    func checkpoint() {
        db.withLock { db in
            guard let db else { return }
            // The pragma, unlike a bare sqlite3_wal_checkpoint_v2 on a connection that has not
            // read the database yet, opens the WAL first. Its row: busy, WAL frames, frames copied.
            guard let frames = Self.checkpoint(db, mode: "PASSIVE"), frames > restartAbove else { return }
            _ = Self.checkpoint(db, mode: "RESTART")
        }
    }

    /// Runs `PRAGMA wal_checkpoint(mode)`; returns the WAL's size in frames, nil on failure.
    private static func checkpoint(_ db: SQLiteConnection, mode: String) -> Int32? {
        guard let stmt = try? db.prepare("PRAGMA wal_checkpoint(\(mode))") else { return nil }
        defer { stmt.finalize() }
        guard (try? stmt.stepRow()) == true else { return nil }
        return Int32(clamping: stmt.int64(1))
    }

    /// Ends the rounds (waiting for one in progress), then closes the connection.
    func close() {
        rounds?.stop()
        db.withLock { db in
            db?.close()
            db = nil
        }
    }
}
