#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Logging
import Synchronization

/// Runs each task instance as a local child process: for `master --dev`, the integration tests and
/// machines without Docker.
///
/// - The command runs under a small `/bin/sh` wrapper that leads a new process group and records
///   the command's exit code in a file, so an instance adopted after a worker restart (no longer
///   this process's child) still reports its exit code. The executable is looked up in the task's
///   PATH before anything starts (a missing one is `.invalidSpec`); an empty command is refused.
/// - Environment: the task's variables over `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`
///   (Docker's default); nothing of the worker's own environment is inherited.
/// - Working directory `<data dir>/tasks/<id>/work`; stdout and stderr go to `stdout.log` and
///   `stderr.log` beside it (not rotated), written by the process itself so output survives a worker
///   restart; the worker notes when they grow (`ProcessLogSampler`) to answer `since`. stdin is /dev/null.
/// - `stop` signals the whole process group: SIGTERM, then SIGKILL after the grace. Processes that
///   leave the group (setsid) are not tracked.
/// - A process killed by a signal reports 128 + the signal, as under Docker.
/// - Not enforced: the image (ignored), the CPU and the memory limits.
public final class ProcessRuntime: TaskRuntime, Sendable {
    /// The data directory: one sub-directory per task instance under `tasks/`.
    public let directory: String
    private let tasksDirectory: String
    private let logger: Logger
    let instances = Mutex<[String: Instance]>([:])
    /// Notes when each running instance's output grew, so `since` can select by time.
    let logSampler: ProcessLogSampler

    /// The PATH a task gets unless its env sets one.
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// How often an adopted instance (not a child of this process) is checked for its end.
    private static let pollInterval = Duration.milliseconds(20)
    /// How long a SIGKILLed instance may take to disappear before `stop`/`remove` give up.
    private static let killTimeout = Duration.seconds(10)

    /// The wrapper: `$1` exit-status file, `$2` working directory, then the command. Trapping the
    /// signals one sends a process group keeps the shell alive to record the code; the command
    /// still gets default dispositions (traps are reset on exec), and a trapped signal arriving
    /// while the shell waits for its foreground command is handled only after the command ends.
    private static let wrapper = #"st=$1; cd -- "$2" || exit 126; shift 2; trap : HUP INT QUIT TERM USR1 USR2 ALRM; "$@"; rc=$?; echo "$rc" > "$st"; exit "$rc""#

    struct Instance: Sendable {
        var files: ProcessTaskFiles
        var pid: pid_t
        var startTicks: UInt64
        /// Set when this runtime spawned the process and reaps it; nil for adopted instances.
        var exit: ExitEvent?
    }

    /// A runtime keeping its instances under `directory` (created when missing). A runtime on the
    /// same directory after a restart finds them with `list()`.
    public init(directory: String, logger: Logger = Logger(label: "orchestrator.agent.process")) throws {
        self.directory = directory
        self.tasksDirectory = directory + "/tasks"
        self.logger = logger
        self.logSampler = ProcessLogSampler()
        do {
            try FileManager.default.createDirectory(atPath: tasksDirectory, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError.system(operation: "create \(tasksDirectory)", errno: 0, message: "\(error)")
        }
    }

    // MARK: - TaskRuntime

    public func start(_ task: RuntimeTask) async throws {
        try RuntimeValidation.check(task, needsCommand: true)
        let files = ProcessTaskFiles(directory: tasksDirectory + "/" + ProcessTaskFiles.directoryName(for: task.taskID))
        // mkdir is atomic: of two starts of one task id, one wins.
        guard mkdir(files.directory, 0o755) == 0 else {
            let error = errno
            if error == EEXIST {
                throw RuntimeError.alreadyExists(taskID: task.taskID, epoch: (try? files.readRecord())?.epoch ?? 0)
            }
            throw RuntimeError.system(operation: "mkdir \(files.directory)", errno: error, message: ProcessSystem.errorString(error))
        }
        var spawned: pid_t = 0
        do {
            var env = ["PATH": Self.defaultPath]
            env.merge(task.env) { _, new in new }
            guard let executable = ProcessSystem.resolveExecutable(task.command[0], path: env["PATH"] ?? "") else {
                let name = task.command[0]
                let message = name.contains("/") && !name.hasPrefix("/")
                    ? "executable \"\(name)\" must be an absolute path or a name looked up in PATH"
                    : "executable \"\(name)\" not found (PATH=\(env["PATH"] ?? ""))"
                throw RuntimeError.invalidSpec(taskID: task.taskID, message: message)
            }
            try makeDirectory(files.work)
            var record = ProcessRecord(taskID: task.taskID, epoch: task.epoch, name: task.name, command: task.command,
                                       pid: 0, startTicks: 0, cancelled: false, startedAt: Date().timeIntervalSince1970)
            try write(record, to: files)
            let stdout = try Self.openLog(files.stdout)
            defer { close(stdout) }
            let stderr = try Self.openLog(files.stderr)
            defer { close(stderr) }
            close(try Self.openLog(files.timeline))
            let argv = ["/bin/sh", "-c", Self.wrapper, "orch-task", files.exitStatus, files.work, executable]
                + task.command.dropFirst()
            spawned = try ProcessSystem.spawn(argv: argv, env: env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
                                              stdoutFD: stdout, stderrFD: stderr)
            // Not reaped yet, so /proc still shows it even if it has already exited.
            guard let stat = ProcessSystem.processStat(spawned) else {
                throw RuntimeError.system(operation: "read /proc/\(spawned)/stat", errno: 0, message: "the new process is not visible")
            }
            record.pid = spawned
            record.startTicks = stat.startTicks
            try write(record, to: files)
            let instance = Instance(files: files, pid: spawned, startTicks: stat.startTicks, exit: .reaping(spawned))
            instances.withLock { $0[task.taskID] = instance }
            logSampler.watch(files)
        } catch {
            if spawned > 0 {
                _ = try? ProcessSystem.signalGroup(spawned, SIGKILL)
                var status: Int32 = 0
                while waitpid(spawned, &status, 0) == -1 && errno == EINTR {}
            }
            try? FileManager.default.removeItem(atPath: files.directory)
            throw error
        }
    }

    public func wait(taskID: String) async throws -> TaskOutcome {
        let instance = try lookup(taskID)
        while isRunning(instance) {
            if let exit = instance.exit {
                try await exit.wait()
            } else {
                try await Task.sleep(for: Self.pollInterval)
            }
        }
        return try outcome(of: instance, taskID: taskID)
    }

    public func stop(taskID: String, grace: Duration) async throws {
        let instance = try lookup(taskID)
        guard isRunning(instance) else { return }
        // The mark goes to disk before any signal, so whoever sees the end reports a cancellation.
        guard var record = try readRecord(instance.files, taskID: taskID) else { throw RuntimeError.notFound(taskID: taskID) }
        record.cancelled = true
        try write(record, to: instance.files)
        guard isRunning(instance), try ProcessSystem.signalGroup(instance.pid, SIGTERM) else { return }
        if try await awaitEnd(instance, within: grace) { return }
        try await kill(instance, taskID: taskID)
    }

    public func logs(taskID: String, limit: Int) async throws -> [UInt8] {
        guard limit > 0 else { return [] }
        return LogSelection.text(try pastFrames(taskID: taskID, query: LogQuery(limitBytes: limit)))
    }

    public func list() async throws -> [RuntimeTaskInfo] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: tasksDirectory)
        } catch {
            throw RuntimeError.system(operation: "list \(tasksDirectory)", errno: 0, message: "\(error)")
        }
        var infos: [RuntimeTaskInfo] = []
        for name in names {
            let files = ProcessTaskFiles(directory: tasksDirectory + "/" + name)
            guard let record = try? files.readRecord() else {
                logger.warning("ignoring a task directory without a readable state file", metadata: ["directory": "\(files.directory)"])
                continue
            }
            let instance = instances.withLock { known in
                if let existing = known[record.taskID] { return existing }
                let adopted = Instance(files: files, pid: record.pid, startTicks: record.startTicks, exit: nil)
                known[record.taskID] = adopted
                logSampler.watch(files)
                return adopted
            }
            let running = isRunning(instance)
            infos.append(RuntimeTaskInfo(taskID: record.taskID, epoch: record.epoch, running: running,
                                         outcome: running ? nil : try outcome(of: instance, taskID: record.taskID)))
        }
        return infos.sorted { ($0.taskID, $0.epoch) < ($1.taskID, $1.epoch) }
    }

    public func remove(taskID: String) async throws {
        let instance = try lookup(taskID)
        if isRunning(instance) { try await kill(instance, taskID: taskID) }
        do {
            try FileManager.default.removeItem(atPath: instance.files.directory)
        } catch {
            if FileManager.default.fileExists(atPath: instance.files.directory) {
                throw RuntimeError.system(operation: "remove \(instance.files.directory)", errno: 0, message: "\(error)")
            }
        }
        instances.withLock { _ = $0.removeValue(forKey: taskID) }
        logSampler.forget(instance.files)
    }

    /// Stops noting output times.
    public func shutdown() async throws {
        logSampler.stop()
    }

    // MARK: - Steps

    /// The instance of `taskID`: known to this runtime, or found on disk (adopted).
    func lookup(_ taskID: String) throws -> Instance {
        let files = ProcessTaskFiles(directory: tasksDirectory + "/" + ProcessTaskFiles.directoryName(for: taskID))
        if let known = instances.withLock({ $0[taskID] }) {
            // Another runtime on this directory may have removed it.
            guard FileManager.default.fileExists(atPath: known.files.directory) else {
                instances.withLock { _ = $0.removeValue(forKey: taskID) }
                throw RuntimeError.notFound(taskID: taskID)
            }
            return known
        }
        guard let record = try readRecord(files, taskID: taskID), record.taskID == taskID else {
            throw RuntimeError.notFound(taskID: taskID)
        }
        let adopted = Instance(files: files, pid: record.pid, startTicks: record.startTicks, exit: nil)
        return instances.withLock { known in
            if let existing = known[taskID] { return existing }
            known[taskID] = adopted
            logSampler.watch(files)
            return adopted
        }
    }

    func isRunning(_ instance: Instance) -> Bool {
        if let exit = instance.exit { return !exit.hasFired }
        return ProcessSystem.isAlive(pid: instance.pid, startTicks: instance.startTicks)
    }

    /// How an instance that is no longer running ended.
    func outcome(of instance: Instance, taskID: String) throws -> TaskOutcome {
        guard let record = try readRecord(instance.files, taskID: taskID) else { throw RuntimeError.notFound(taskID: taskID) }
        if record.cancelled { return .cancelled }
        if let code = instance.files.readExitStatus() { return .exited(code: code) }
        if let status = instance.exit?.status { return .exited(code: ProcessSystem.exitCode(fromWaitStatus: status)) }
        if record.pid == 0 {
            return .failed(reason: .runtimeError, message: "the worker stopped while starting the process; it was not tracked")
        }
        return .failed(reason: .runtimeError,
                       message: "the process ended without recording its exit code (killed with SIGKILL while the worker was away?)")
    }

    /// SIGKILL to the group, then wait (bounded) for the end.
    private func kill(_ instance: Instance, taskID: String) async throws {
        guard try ProcessSystem.signalGroup(instance.pid, SIGKILL) else { return }
        guard try await awaitEnd(instance, within: Self.killTimeout) else {
            throw RuntimeError.timedOut(operation: "killing task \(taskID) (pid \(instance.pid))", after: Self.killTimeout)
        }
    }

    /// Whether the instance ended within `within`.
    private func awaitEnd(_ instance: Instance, within: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + within
        while isRunning(instance) {
            let now = ContinuousClock.now
            if now >= deadline { return false }
            if let exit = instance.exit {
                _ = try await exit.wait(until: deadline)
            } else {
                try await Task.sleep(until: min(deadline, now + Self.pollInterval), clock: .continuous)
            }
        }
        return true
    }

    private func readRecord(_ files: ProcessTaskFiles, taskID: String) throws -> ProcessRecord? {
        do {
            return try files.readRecord()
        } catch {
            throw RuntimeError.system(operation: "read \(files.record)", errno: 0, message: "\(error)")
        }
    }

    private func write(_ record: ProcessRecord, to files: ProcessTaskFiles) throws {
        do {
            try files.write(record)
        } catch {
            throw RuntimeError.system(operation: "write \(files.record)", errno: 0, message: "\(error)")
        }
    }

    private static func openLog(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let error = errno
            throw RuntimeError.system(operation: "open \(path)", errno: error, message: ProcessSystem.errorString(error))
        }
        return fd
    }

    private func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            let error = errno
            throw RuntimeError.system(operation: "mkdir \(path)", errno: error, message: ProcessSystem.errorString(error))
        }
    }
}
