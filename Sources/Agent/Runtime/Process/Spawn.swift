#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// The system calls behind `ProcessRuntime`: posix_spawn into a new process group with default
/// signal dispositions, `/proc` inspection, process-group signals.
enum ProcessSystem {
    /// Runs `argv` (with `argv[0]` an absolute path) in a new process group of its own, stdin from
    /// /dev/null, stdout to `stdoutFD` and stderr to `stderrFD`, no other descriptor inherited, every signal at
    /// its default disposition and none blocked (the worker's own ignored SIGPIPE must not leak into
    /// tasks: `yes | head` would misbehave).
    static func spawn(argv: [String], env: [String], stdoutFD: Int32, stderrFD: Int32) throws(RuntimeError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutFD, 1)
        posix_spawn_file_actions_adddup2(&actions, stderrFD, 2)
        // Inherited descriptors (a listening socket, say) would outlive a worker restart in the
        // task; glibc >= 2.34 can close them all in the child.
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgv, cEnv)
        guard rc == 0 else { throw .system(operation: "posix_spawn \(argv[0])", errno: rc, message: errorString(rc)) }
        return pid
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not expose.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    /// What `/proc/<pid>/stat` says: the state letter and the start time in clock ticks since boot
    /// (which, with the pid, identifies a process: pids are recycled, start times are not).
    static func processStat(_ pid: pid_t) -> (state: Character, startTicks: UInt64)? {
        guard pid > 0, let text = readSmallFile("/proc/\(pid)/stat"),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "pid (comm)": state is field 3, starttime field 22.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ticks = UInt64(fields[19]) else { return nil }
        return (state, ticks)
    }

    /// Whether the process `pid` that started at `startTicks` still exists and has not ended
    /// (a zombie has ended).
    static func isAlive(pid: pid_t, startTicks: UInt64) -> Bool {
        guard let stat = processStat(pid), stat.startTicks == startTicks else { return false }
        return stat.state != "Z" && stat.state != "X" && stat.state != "x"
    }

    /// Signals the process group `pgid`; false when it no longer exists.
    static func signalGroup(_ pgid: pid_t, _ signal: Int32) throws(RuntimeError) -> Bool {
        guard pgid > 1 else { return false }
        if kill(-pgid, signal) == 0 { return true }
        let error = errno
        if error == ESRCH { return false }
        throw .system(operation: "kill(-\(pgid), \(signal))", errno: error, message: errorString(error))
    }

    /// The first executable regular file named `name` in `path` (a PATH value); `name` with a `/`
    /// is taken as is.
    static func resolveExecutable(_ name: String, path: String) -> String? {
        func isExecutableFile(_ candidate: String) -> Bool {
            var info = stat()
            return stat(candidate, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(candidate, X_OK) == 0
        }
        if name.contains("/") { return name.hasPrefix("/") && isExecutableFile(name) ? name : nil }
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) where directory.hasPrefix("/") {
            let candidate = directory.hasSuffix("/") ? "\(directory)\(name)" : "\(directory)/\(name)"
            if isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    /// Reads a small file (such as one under /proc, whose size reads as 0) completely.
    static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func errorString(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// How a `waitpid` status reads as an exit code: the code itself, or 128 + the signal.
    static func exitCode(fromWaitStatus status: Int32) -> Int32 {
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }
}

/// Fires once, when a child process has been reaped; any number of tasks can wait for it.
final class ExitEvent: Sendable {
    private struct State {
        var fired = false
        /// The `waitpid` status, nil when the child could not be waited for (ECHILD).
        var status: Int32?
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var cancelled: Set<Int> = []
        var nextID = 0
    }

    private let state = Mutex(State())

    /// Reaps `pid` on a thread of its own (a blocking `waitpid` for exactly this pid, so other
    /// owners of child processes in this process are not disturbed) and fires when it has ended.
    static func reaping(_ pid: pid_t) -> ExitEvent {
        let event = ExitEvent()
        let thread = Thread {
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, 0) } while result == -1 && errno == EINTR
            event.fire(status: result == pid ? status : nil)
        }
        thread.start()
        return event
    }

    var hasFired: Bool { state.withLock { $0.fired } }
    var status: Int32? { state.withLock { $0.status } }

    func fire(status: Int32?) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            state.status = status
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        waiters.forEach { $0.resume() }
    }

    /// Returns when the event has fired; throws `CancellationError` when the caller is cancelled first.
    func wait() async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.fired || state.cancelled.contains(id) { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.cancelled.insert(id)
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.resume()
        }
        state.withLock { _ = $0.cancelled.remove(id) }
        if !hasFired { throw CancellationError() }
    }

    /// Whether the event fired before `deadline`.
    func wait(until deadline: ContinuousClock.Instant) async throws -> Bool {
        if hasFired { return true }
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await self.wait()
                return true
            }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            let first = try await group.next() ?? false
            group.cancelAll()
            return first || self.hasFired
        }
    }
}
