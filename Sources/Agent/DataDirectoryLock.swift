import Foundation

/// An exclusive claim on a worker's data directory, held for the life of the process.
///
/// Two workers in one directory would share its `node-id`, so both would claim to be the same
/// node and each would adopt the other's tasks. The claim is `flock` on `<dir>/lock` (released by
/// the kernel when the process ends, even by SIGKILL, so a crash never leaves a stale lock); the
/// holder's pid is written into the file for the refusal's message.
public final class DataDirectoryLock: Sendable {
    private let descriptor: Int32
    public let path: String

    /// Takes the lock or throws `WorkerError.invalidConfiguration` saying who holds it and what to do.
    public static func acquire(dataDir: String) throws -> DataDirectoryLock {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let path = dataDir + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw WorkerError.invalidConfiguration("--data-dir \(dataDir): cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            let who = holder.isEmpty ? "another worker" : "another worker (pid \(holder))"
            throw WorkerError.invalidConfiguration(
                "--data-dir \(dataDir) is in use by \(who): give each worker its own --data-dir (or ORCH_DATA_DIR)")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        return DataDirectoryLock(descriptor: fd, path: path)
    }

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }
}
