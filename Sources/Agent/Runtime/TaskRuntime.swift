import Foundation
import ClusterModel

/// What to run: a task's spec together with the assignment (task id and epoch) that asks for it.
public struct RuntimeTask: Sendable, Hashable {
    /// The task's id in the cluster; a runtime holds at most one instance per task id.
    public var taskID: String
    /// The epoch of the assignment this instance runs under (kept with the instance for adoption).
    public var epoch: UInt64
    /// The task's human-readable name (shown in `docker ps` and logs, not used as a key).
    public var name: String
    /// A Docker image reference. `ProcessRuntime` ignores it.
    public var image: String
    /// The argument vector. Empty means "the image's default command" for `DockerRuntime` (as Docker,
    /// Kubernetes and Nomad do); `ProcessRuntime` has no image and rejects an empty command.
    public var command: [String]
    /// Variables set for the task, over the image's (Docker) or a minimal PATH (processes).
    public var env: [String: String]
    /// CPU limit in thousandths of a core; 0 means no limit.
    public var cpuMillicores: Int
    /// Memory limit in MB (swap included, so the limit is real); 0 means no limit.
    public var memoryMB: Int

    public init(taskID: String, epoch: UInt64, name: String, image: String, command: [String],
                env: [String: String] = [:], cpuMillicores: Int = 0, memoryMB: Int = 0) {
        self.taskID = taskID
        self.epoch = epoch
        self.name = name
        self.image = image
        self.command = command
        self.env = env
        self.cpuMillicores = cpuMillicores
        self.memoryMB = memoryMB
    }

    /// The instance a worker runs for `spec` under the assignment (`taskID`, `epoch`).
    public init(taskID: String, epoch: UInt64, spec: TaskSpec) {
        self.init(taskID: taskID, epoch: epoch, name: spec.name, image: spec.image, command: spec.command,
                  env: spec.env, cpuMillicores: spec.resources.cpu, memoryMB: spec.resources.memory)
    }
}

/// Why a task failed without producing an exit code of its own.
public enum FailureReason: String, Sendable, Hashable, Codable, CaseIterable {
    /// The image is neither present nor pullable.
    case imageNotFound = "image_not_found"
    /// The task cannot run as specified: bad image reference, empty command where one is needed,
    /// executable not found, limits the runtime refuses.
    case invalidSpec = "invalid_spec"
    /// The runtime itself failed: Docker unreachable or answering errors, spawn or file errors.
    case runtimeError = "runtime_error"
}

/// How a task ended.
public enum TaskOutcome: Sendable, Hashable {
    /// The task's main process exited with `code`; a process killed by signal N reports 128 + N,
    /// as Docker does.
    case exited(code: Int32)
    /// The task ended with the non-zero `code` (usually 137) after the kernel killed one of its
    /// processes for exceeding the memory limit. (A task that still exits 0 is `.exited(code: 0)`.)
    case oomKilled(code: Int32)
    /// The task was stopped through `TaskRuntime.stop` before it ended by itself.
    case cancelled
    /// The task could not run, or its end could not be observed.
    case failed(reason: FailureReason, message: String)

    /// Whether the task did what it was asked: exit code 0.
    public var isSuccess: Bool { self == .exited(code: 0) }
}

/// A task instance a runtime knows about, as `TaskRuntime.list()` reports it.
public struct RuntimeTaskInfo: Sendable, Hashable {
    public var taskID: String
    public var epoch: UInt64
    /// Whether the task is still running (then `outcome` is nil).
    public var running: Bool
    /// How it ended, once it has.
    public var outcome: TaskOutcome?

    public init(taskID: String, epoch: UInt64, running: Bool, outcome: TaskOutcome?) {
        self.taskID = taskID
        self.epoch = epoch
        self.running = running
        self.outcome = outcome
    }
}

/// Runs task instances on this worker: Docker containers (`DockerRuntime`) or local processes
/// (`ProcessRuntime`).
///
/// Instances are addressed by task id: a runtime holds at most one instance per task id, whatever
/// its epoch (`start` refuses a second one with `RuntimeError.alreadyExists` until the first is
/// removed), so a task never runs twice on a worker. Instances outlive the runtime object and the
/// worker process: a new runtime with the same identity finds them with `list()` and can `wait`,
/// `stop`, read `logs` of and `remove` them.
///
/// Every method throws `RuntimeError` (or `CancellationError` when the calling task is cancelled);
/// `RuntimeError.outcome` turns a failed `start` into the task's outcome:
///
/// ```swift
/// do { try await runtime.start(task) } catch let error as RuntimeError { report(error.outcome) }
/// ```
public protocol TaskRuntime: Sendable {
    /// Creates the instance and starts it; returns once it runs. Throws `RuntimeError` (with
    /// `failureReason` `.invalidSpec`, `.imageNotFound` or `.runtimeError`) when it cannot, leaving
    /// nothing behind.
    func start(_ task: RuntimeTask) async throws

    /// Waits until the instance ends and says how; returns at once when it already has. Works for
    /// instances another runtime object started (adoption). Honours task cancellation.
    func wait(taskID: String) async throws -> TaskOutcome

    /// Sends SIGTERM, then SIGKILL when the instance still runs after `grace`; returns once it has
    /// ended. Its outcome is then `.cancelled`. Stopping an instance that has already ended changes
    /// nothing (its outcome stays what it was).
    func stop(taskID: String, grace: Duration) async throws

    /// The last `limit` bytes of the instance's stdout and stderr, interleaved as written.
    func logs(taskID: String, limit: Int) async throws -> [UInt8]

    /// The instance's output as frames that tell stdout from stderr: the past output `query`
    /// selects, then with `query.follow` new output as it is written until the instance has ended
    /// and everything it wrote was passed to `emit`; returns how it ended (nil without `follow`).
    func readLogs(taskID: String, query: LogQuery, emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> TaskOutcome?

    /// The instances this runtime's identity started that still exist (running or ended and not yet
    /// removed): what a restarted worker adopts.
    func list() async throws -> [RuntimeTaskInfo]

    /// Deletes what is left of the instance (container, log and state files); an instance that
    /// still runs is killed first. Removing an unknown task id throws `.notFound`.
    func remove(taskID: String) async throws

    /// Releases the runtime's own resources (connections to the engine) when the worker stops;
    /// instances keep running. The runtime must not be used after.
    func shutdown() async throws
}

extension TaskRuntime {
    /// For runtimes that cannot tell the streams apart: the past output as stdout, and with
    /// `follow` nothing new until the end.
    public func readLogs(taskID: String, query: LogQuery,
                         emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> TaskOutcome? {
        let bytes = try await logs(taskID: taskID, limit: query.limitBytes)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let frames = LogSelection.select([LogFrame(stream: .stdout, unixMs: now, bytes: bytes)], query)
        if !frames.isEmpty { try await emit(frames) }
        return query.follow ? try await wait(taskID: taskID) : nil
    }

    /// Nothing to release.
    public func shutdown() async throws {}

    /// The last 64 KiB of the instance's stdout and stderr.
    public func logs(taskID: String) async throws -> [UInt8] {
        try await logs(taskID: taskID, limit: defaultLogLimit)
    }
}

/// How much output `logs(taskID:)` returns: 64 KiB.
public let defaultLogLimit = 64 * 1024

/// Why a runtime operation failed. `description` is one line a person can act on.
public enum RuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The task cannot run as given (bad image reference, empty command, missing executable, ...).
    case invalidSpec(taskID: String, message: String)
    /// The image is not present and could not be pulled.
    case imageNotFound(image: String, message: String)
    /// Docker's socket is missing or refuses connections.
    case dockerUnreachable(socketPath: String, message: String)
    /// Docker answered an error to `operation`.
    case docker(operation: String, status: Int, message: String)
    /// No instance of the task exists in this runtime.
    case notFound(taskID: String)
    /// An instance of the task already exists (`epoch` is the existing one's).
    case alreadyExists(taskID: String, epoch: UInt64)
    /// `operation` did not finish within its time bound.
    case timedOut(operation: String, after: Duration)
    /// A system call of the process runtime failed.
    case system(operation: String, errno: Int32, message: String)

    /// What this error means for the task, were it to end the task.
    public var failureReason: FailureReason {
        switch self {
        case .invalidSpec: .invalidSpec
        case .imageNotFound: .imageNotFound
        case .dockerUnreachable, .docker, .notFound, .alreadyExists, .timedOut, .system: .runtimeError
        }
    }

    /// The outcome to record for a task whose `start` threw this error.
    public var outcome: TaskOutcome { .failed(reason: failureReason, message: description) }

    public var description: String {
        switch self {
        case let .invalidSpec(taskID, message):
            "task \(taskID): invalid spec: \(message)"
        case let .imageNotFound(image, message):
            "image \(image) is not present and cannot be pulled: \(message)"
        case let .dockerUnreachable(socketPath, message):
            "Docker does not answer on \(socketPath) (\(message)); is dockerd running and the socket path right?"
        case let .docker(operation, status, message):
            "Docker refused \(operation) (HTTP \(status)): \(message)"
        case let .notFound(taskID):
            "no instance of task \(taskID) in this runtime"
        case let .alreadyExists(taskID, epoch):
            "task \(taskID) already has an instance (epoch \(epoch)); remove it before starting another"
        case let .timedOut(operation, after):
            "\(operation) did not finish within \(after)"
        case let .system(operation, errno, message):
            "\(operation) failed: \(message) (errno \(errno))"
        }
    }
}

/// Checks shared by the runtimes before anything is created.
enum RuntimeValidation {
    static func check(_ task: RuntimeTask, needsCommand: Bool) throws(RuntimeError) {
        func invalid(_ message: String) -> RuntimeError { .invalidSpec(taskID: task.taskID, message: message) }
        guard !task.taskID.isEmpty else { throw invalid("empty task id") }
        guard task.taskID.utf8.count <= 200, !task.taskID.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw invalid("task id longer than 200 bytes or with control characters")
        }
        guard task.cpuMillicores >= 0 else { throw invalid("cpu must not be negative (got \(task.cpuMillicores))") }
        guard task.memoryMB >= 0 else { throw invalid("memory must not be negative (got \(task.memoryMB))") }
        if needsCommand, task.command.isEmpty {
            throw invalid("empty command (this runtime has no image default to fall back to)")
        }
        if let first = task.command.first, first.isEmpty { throw invalid("command[0] is empty") }
        if task.command.contains(where: { $0.contains("\0") }) { throw invalid("command contains a NUL byte") }
        for (key, value) in task.env {
            guard !key.isEmpty, !key.contains("="), !key.contains("\0"), !value.contains("\0") else {
                throw invalid("env variable \"\(key)\" must have a non-empty name without '=' or NUL")
            }
        }
    }
}
