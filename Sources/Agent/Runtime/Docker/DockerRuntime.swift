import AsyncHTTPClient
import ClusterModel
import Foundation
import Logging
import NIOCore
import Synchronization

/// The labels `DockerRuntime` puts on its containers; `list()` finds a worker's containers by them.
public enum RuntimeLabel {
    public static let taskID = "orchestrator.task-id"
    public static let epoch = "orchestrator.epoch"
    /// The worker's node id: containers of other workers sharing the same dockerd are not ours.
    public static let owner = "orchestrator.owner"
    public static let taskName = "orchestrator.task-name"
}

/// Runs each task instance as a Docker container through the Docker Engine API (v1.41) over the
/// daemon's unix socket.
///
/// - The image is inspected and pulled when missing; an image that cannot be had fails the start
///   with `.imageNotFound` (the pull is bounded by `Configuration.pullTimeout`).
/// - The container gets the task's command (none: the image's default), env, a CPU limit
///   (`NanoCpus`, clamped to what Docker accepts: 0.01 core up to the host's CPUs) and a memory
///   limit with swap equal to it (so the limit is real), and the labels of `RuntimeLabel`.
/// - Its name is `orch-<owner>-<task id>-<epoch>` (characters Docker refuses become `_`); a stopped
///   container is renamed with a `-cancelled` suffix before it is signalled, which is how its
///   outcome stays `.cancelled` across a worker restart.
/// - Exit codes of containers killed by a signal are 128 + the signal, as Docker reports them; a
///   container that ends with a non-zero code after the kernel killed one of its processes for
///   memory is `.oomKilled`.
/// - `stop` uses Docker's stop with whole seconds: the grace is rounded up.
/// - Every container is confined by the worker's `TaskContainerPolicy` (no new privileges, a
///   process limit, a capped json-file log, `NET_RAW` dropped); a task spec cannot loosen it.
///
/// Call `shutdown()` before dropping the runtime.
public final class DockerRuntime: TaskRuntime, Sendable {
    /// Where Docker is and how long to wait for it.
    public struct Configuration: Sendable {
        public var socketPath: String
        /// The Engine API version the requests name (dockerd 20.10 speaks 1.41).
        public var apiVersion: String
        /// The bound of ordinary API calls (inspect, create, start, remove, ...).
        public var requestTimeout: Duration
        /// The bound of an image pull.
        public var pullTimeout: Duration
        /// Connections to dockerd at most: every `wait` holds one for as long as the task runs.
        public var maxConnections: Int
        /// What every task container is confined by; the operator's, never the task's.
        public var containerPolicy: TaskContainerPolicy

        public init(socketPath: String = "/var/run/docker.sock", apiVersion: String = "v1.41",
                    requestTimeout: Duration = .seconds(30), pullTimeout: Duration = .seconds(300),
                    maxConnections: Int = 512, containerPolicy: TaskContainerPolicy = TaskContainerPolicy()) {
            self.socketPath = socketPath
            self.apiVersion = apiVersion
            self.requestTimeout = requestTimeout
            self.pullTimeout = pullTimeout
            self.maxConnections = maxConnections
            self.containerPolicy = containerPolicy
        }
    }

    /// This worker's identity: the `orchestrator.owner` label of the containers it starts.
    public let owner: String
    public let configuration: Configuration
    let api: DockerAPI
    private let client: HTTPClient
    private let logger: Logger
    let state = Mutex(State())

    struct State {
        /// Container ids of the task ids seen (a cache: Docker stays the truth).
        var containers: [String: String] = [:]
        /// Task ids whose start is in progress, so two starts of one task cannot race.
        var starting: [String: UInt64] = [:]
        /// The host's CPUs as Docker sees them (the NanoCpus ceiling), once asked.
        var hostCPUs: Int?
    }

    /// A runtime for the worker `owner` (its node id). Connects lazily: a missing socket surfaces as
    /// `RuntimeError.dockerUnreachable` from the first call (`ping()` checks up front).
    public init(owner: String, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "orchestrator.agent.docker")) {
        self.owner = owner
        self.configuration = configuration
        self.logger = logger
        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: .seconds(5), read: nil)
        // Fail at once when the socket is missing instead of retrying until the connect timeout.
        http.connectionPool.retryConnectionEstablishment = false
        // Requests beyond the pool's limit queue; long-polling waits must not starve the others.
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = configuration.maxConnections
        http.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http,
                            backgroundActivityLogger: logger)
        api = DockerAPI(client: client, socketPath: configuration.socketPath, apiVersion: configuration.apiVersion)
    }

    /// Closes the connections to dockerd; containers keep running. The runtime must not be used after.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    /// Checks that dockerd answers (`GET /_ping`).
    public func ping() async throws {
        let response = try await call(.get, "/_ping", operation: "ping")
        guard response.status == 200 else {
            throw RuntimeError.docker(operation: "ping", status: response.status, message: response.message)
        }
    }

    // MARK: - TaskRuntime

    public func start(_ task: RuntimeTask) async throws {
        try RuntimeValidation.check(task, needsCommand: false)
        if let problem = ImageReference.problem(with: task.image) {
            throw RuntimeError.invalidSpec(taskID: task.taskID, message: "image: " + problem)
        }
        try state.withLock { state throws(RuntimeError) in
            if let epoch = state.starting[task.taskID] { throw .alreadyExists(taskID: task.taskID, epoch: epoch) }
            state.starting[task.taskID] = task.epoch
        }
        defer { _ = state.withLock { $0.starting.removeValue(forKey: task.taskID) } }

        if let existing = try await findContainer(taskID: task.taskID) {
            throw RuntimeError.alreadyExists(taskID: task.taskID, epoch: existing.epoch)
        }
        try await ensureImage(task.image)
        let id = try await createContainer(task)
        do {
            let response = try await call(.post, "/containers/\(id)/start", operation: "start \(task.taskID)")
            guard response.status == 204 || response.status == 304 else {
                throw Self.startError(task, status: response.status, message: response.message)
            }
        } catch {
            // A container that never ran is not an instance: leave nothing behind.
            _ = try? await call(.delete, "/containers/\(id)", query: [("force", "1"), ("v", "1")], operation: "remove")
            throw error
        }
        state.withLock { $0.containers[task.taskID] = id }
        logger.debug("started container", metadata: ["task": "\(task.taskID)", "epoch": "\(task.epoch)", "container": "\(id.prefix(12))"])
    }

    public func wait(taskID: String) async throws -> TaskOutcome {
        try await withContainer(taskID) { id in
            let request = try api.request(.post, "/containers/\(id)/wait", query: [("condition", "not-running")])
            // A long poll that lasts as long as the task: no deadline.
            let response = try await api.send(request, operation: "wait for \(taskID)", deadline: .distantFuture,
                                              timeout: .seconds(Int64.max))
            if response.status == 404 { throw ContainerGone() }
            guard response.status == 200 else {
                throw RuntimeError.docker(operation: "wait for \(taskID)", status: response.status, message: response.message)
            }
            let result = try response.decode(DockerWaitResult.self, operation: "wait for \(taskID)")
            guard let info = try await inspect(id, operation: "inspect \(taskID)") else {
                // Removed as it ended: the exit code is all there is.
                return .exited(code: Self.clamp(result.statusCode))
            }
            return Self.outcome(of: info)
        }
    }

    public func stop(taskID: String, grace: Duration) async throws {
        try await withContainer(taskID) { id in
            guard let info = try await inspect(id, operation: "inspect \(taskID)") else { throw ContainerGone() }
            guard Self.isRunning(info.state.status) else { return }
            let cancelledName = Self.cancelledName(of: info)
            if info.name != "/" + cancelledName {
                // The durable mark that this ending is a cancellation, set before any signal.
                let renamed = try await call(.post, "/containers/\(id)/rename", query: [("name", cancelledName)],
                                             operation: "rename \(taskID)")
                if renamed.status != 204 {
                    logger.warning("could not mark container as cancelled", metadata: [
                        "task": "\(taskID)", "status": "\(renamed.status)", "message": "\(renamed.message)"])
                }
            }
            let seconds = Self.wholeSeconds(grace)
            let timeout = grace + configuration.requestTimeout
            let response = try await call(.post, "/containers/\(id)/stop", query: [("t", String(seconds))],
                                          operation: "stop \(taskID)", timeout: timeout)
            switch response.status {
            case 204, 304: return  // Docker answers once the container has stopped.
            case 404: throw ContainerGone()
            default:
                throw RuntimeError.docker(operation: "stop \(taskID)", status: response.status, message: response.message)
            }
        }
    }

    public func logs(taskID: String, limit: Int) async throws -> [UInt8] {
        guard limit > 0 else { return [] }
        return try await withContainer(taskID) { id in
            // `tail` counts lines, not bytes: ask for a few, and for more only when they fall short.
            var lines: Int? = max(128, limit / 64)
            while true {
                let (tail, frames) = try await fetchLogs(id, taskID: taskID, lines: lines, limit: limit)
                guard let asked = lines, tail.totalCount < limit, frames >= asked else { return tail.bytes }
                lines = asked >= 1 << 20 ? nil : asked * 8
            }
        }
    }

    public func list() async throws -> [RuntimeTaskInfo] {
        let containers = try await listContainers(labels: ["\(RuntimeLabel.owner)=\(owner)"])
        var infos: [RuntimeTaskInfo] = []
        for container in containers {
            guard let taskID = container.labels?[RuntimeLabel.taskID] else { continue }
            let epoch = container.labels?[RuntimeLabel.epoch].flatMap { UInt64($0) } ?? 0
            state.withLock { $0.containers[taskID] = container.id }
            if Self.isRunning(container.state) {
                infos.append(RuntimeTaskInfo(taskID: taskID, epoch: epoch, running: true, outcome: nil))
            } else if let info = try await inspect(container.id, operation: "inspect \(taskID)") {
                let running = Self.isRunning(info.state.status)
                infos.append(RuntimeTaskInfo(taskID: taskID, epoch: epoch, running: running,
                                             outcome: running ? nil : Self.outcome(of: info)))
            }
        }
        return infos.sorted { ($0.taskID, $0.epoch) < ($1.taskID, $1.epoch) }
    }

    public func remove(taskID: String) async throws {
        try await withContainer(taskID) { id in
            let response = try await call(.delete, "/containers/\(id)", query: [("force", "1"), ("v", "1")],
                                          operation: "remove \(taskID)")
            switch response.status {
            case 204: break
            case 404: throw ContainerGone()
            case 409 where response.message.contains("already in progress"): break
            default:
                throw RuntimeError.docker(operation: "remove \(taskID)", status: response.status, message: response.message)
            }
            state.withLock { state in
                if state.containers[taskID] == id { state.containers[taskID] = nil }
            }
        }
    }

    /// The raw inspection of a task's container (for diagnostics and tests: limits, labels, name).
    func inspect(taskID: String) async throws -> DockerContainerInspect {
        try await withContainer(taskID) { id in
            guard let info = try await inspect(id, operation: "inspect \(taskID)") else { throw ContainerGone() }
            return info
        }
    }

    // MARK: - Steps

    /// Thrown inside `withContainer` when the container id in hand no longer exists.
    struct ContainerGone: Error {}

    /// Runs `body` with the task's container id; when the id was stale it looks the task up again once.
    func withContainer<T>(_ taskID: String, _ body: (String) async throws -> T) async throws -> T {
        for attempt in 0..<2 {
            let cached = attempt == 0 ? state.withLock { $0.containers[taskID] } : nil
            let id: String
            if let cached {
                id = cached
            } else if let found = try await findContainer(taskID: taskID) {
                id = found.id
                state.withLock { $0.containers[taskID] = found.id }
            } else {
                break
            }
            do {
                return try await body(id)
            } catch is ContainerGone {
                state.withLock { state in
                    if state.containers[taskID] == id { state.containers[taskID] = nil }
                }
                if cached == nil { break }
            }
        }
        throw RuntimeError.notFound(taskID: taskID)
    }

    private func findContainer(taskID: String) async throws -> (id: String, epoch: UInt64)? {
        let found = try await listContainers(labels: ["\(RuntimeLabel.owner)=\(owner)", "\(RuntimeLabel.taskID)=\(taskID)"])
        guard let first = found.first else { return nil }
        return (first.id, first.labels?[RuntimeLabel.epoch].flatMap { UInt64($0) } ?? 0)
    }

    private func listContainers(labels: [String]) async throws -> [DockerContainerSummary] {
        let filters = String(decoding: try JSONEncoder().encode(["label": labels]), as: UTF8.self)
        let response = try await call(.get, "/containers/json", query: [("all", "1"), ("filters", filters)],
                                      operation: "list containers")
        guard response.status == 200 else {
            throw RuntimeError.docker(operation: "list containers", status: response.status, message: response.message)
        }
        return try response.decode([DockerContainerSummary].self, operation: "list containers")
    }

    /// The container's inspection, or nil when it does not exist.
    private func inspect(_ id: String, operation: String) async throws -> DockerContainerInspect? {
        let response = try await call(.get, "/containers/\(id)/json", operation: operation)
        if response.status == 404 { return nil }
        guard response.status == 200 else {
            throw RuntimeError.docker(operation: operation, status: response.status, message: response.message)
        }
        return try response.decode(DockerContainerInspect.self, operation: operation)
    }

    /// One API call with a body read in full, bounded by `timeout` (the configured default if nil).
    func call(_ verb: DockerAPI.Verb, _ path: String, query: [(String, String)] = [],
                      json: (any Encodable)? = nil, operation: String, timeout: Duration? = nil) async throws -> DockerAPI.Response {
        let timeout = timeout ?? configuration.requestTimeout
        let request = try api.request(verb, path, query: query, json: json)
        return try await api.send(request, operation: operation, timeout: timeout)
    }
}
