import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Orchestrator
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

        public init(socketPath: String = "/var/run/docker.sock", apiVersion: String = "v1.41",
                    requestTimeout: Duration = .seconds(30), pullTimeout: Duration = .seconds(300),
                    maxConnections: Int = 512) {
            self.socketPath = socketPath
            self.apiVersion = apiVersion
            self.requestTimeout = requestTimeout
            self.pullTimeout = pullTimeout
            self.maxConnections = maxConnections
        }
    }

    /// This worker's identity: the `orchestrator.owner` label of the containers it starts.
    public let owner: String
    public let configuration: Configuration
    let api: DockerAPI
    private let client: HTTPClient
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
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
        do {
            try TaskSpecParser.validateImage(task.image)
        } catch {
            throw RuntimeError.invalidSpec(taskID: task.taskID, message: error.message)
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
    private struct ContainerGone: Error {}

    /// Runs `body` with the task's container id; when the id was stale it looks the task up again once.
    private func withContainer<T>(_ taskID: String, _ body: (String) async throws -> T) async throws -> T {
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

    private func createContainer(_ task: RuntimeTask) async throws -> String {
        var host = DockerCreateContainer.HostConfig()
        if task.cpuMillicores > 0 {
            host.nanoCpus = Int64(try await clampedMillicores(task.cpuMillicores)) * 1_000_000
        }
        if task.memoryMB > 0 {
            host.memory = Int64(task.memoryMB) * 1024 * 1024
            host.memorySwap = host.memory
        }
        let body = DockerCreateContainer(
            image: task.image,
            cmd: task.command.isEmpty ? nil : task.command,
            env: task.env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            labels: [RuntimeLabel.taskID: task.taskID, RuntimeLabel.epoch: String(task.epoch),
                     RuntimeLabel.owner: owner, RuntimeLabel.taskName: task.name],
            hostConfig: host)
        let name = Self.containerName(owner: owner, taskID: task.taskID, epoch: task.epoch)
        let operation = "create container for \(task.taskID)"
        let response = try await call(.post, "/containers/create", query: [("name", name)], json: body, operation: operation)
        switch response.status {
        case 201:
            return try response.decode(DockerCreated.self, operation: operation).id
        case 404:
            throw RuntimeError.imageNotFound(image: task.image, message: response.message)
        case 409:
            throw RuntimeError.alreadyExists(taskID: task.taskID, epoch: task.epoch)
        case 400:
            // Docker's validation: "No command specified", "Minimum memory limit allowed is 6MB", ...
            throw RuntimeError.invalidSpec(taskID: task.taskID, message: response.message)
        default:
            throw RuntimeError.docker(operation: operation, status: response.status, message: response.message)
        }
    }

    /// Docker refuses NanoCpus under 0.01 core or above the host's CPUs: a worker that advertises
    /// more than the host has still runs the task, at the host's full width.
    private func clampedMillicores(_ millicores: Int) async throws -> Int {
        var cpus = state.withLock { $0.hostCPUs }
        if cpus == nil {
            struct Info: Decodable { var NCPU: Int }
            let response = try await call(.get, "/info", operation: "info")
            guard response.status == 200 else {
                throw RuntimeError.docker(operation: "info", status: response.status, message: response.message)
            }
            let count = try response.decode(Info.self, operation: "info").NCPU
            state.withLock { $0.hostCPUs = count }
            cpus = count
        }
        return min(max(millicores, 10), max(1, cpus ?? 1) * 1000)
    }

    /// Makes sure `image` is present, pulling it when it is not.
    private func ensureImage(_ image: String) async throws {
        let path = "/images/\(DockerAPI.encodeImagePath(image))/json"
        let present = try await call(.get, path, operation: "inspect image \(image)")
        if present.status == 200 { return }
        guard present.status == 404 else {
            throw RuntimeError.docker(operation: "inspect image \(image)", status: present.status, message: present.message)
        }
        try await pull(image)
        let after = try await call(.get, path, operation: "inspect image \(image)")
        guard after.status == 200 else {
            throw RuntimeError.imageNotFound(image: image, message: "the pull ended but the image is not present (\(after.message))")
        }
    }

    private func pull(_ image: String) async throws {
        var query = [("fromImage", image)]
        // Without a tag (or digest) Docker would pull every tag of the repository.
        let lastComponent = image.split(separator: "/").last ?? ""
        if !image.contains("@"), !lastComponent.contains(":") { query.append(("tag", "latest")) }
        let request = try api.request(.post, "/images/create", query: query)
        let timeout = configuration.pullTimeout
        do {
            try await api.stream(request, operation: "pull \(image)", deadline: .now() + timeout.timeAmount,
                                 timeout: timeout) { status, body in
                var text = ByteBuffer()
                for try await chunk in body {
                    var chunk = chunk
                    // Progress lines only matter for their errors; keep the tail to find them.
                    text.writeBuffer(&chunk)
                    if text.readableBytes > 1 << 16 { text.moveReaderIndex(forwardBy: text.readableBytes - (1 << 15)) }
                }
                let answer = DockerAPI.Response(status: status, body: text)
                guard status == 200 else { throw RuntimeError.imageNotFound(image: image, message: answer.message) }
                for line in String(buffer: text).split(separator: "\n") {
                    guard let progress = try? JSONDecoder().decode(DockerPullProgress.self, from: Data(line.utf8)) else { continue }
                    if let message = progress.errorDetail?.message ?? progress.error {
                        throw RuntimeError.imageNotFound(image: image, message: message)
                    }
                }
            }
        } catch RuntimeError.timedOut {
            throw RuntimeError.imageNotFound(image: image, message: "the pull did not finish within \(timeout)")
        }
    }

    private func fetchLogs(_ id: String, taskID: String, lines: Int?, limit: Int) async throws -> (TailBuffer, Int) {
        let query = [("stdout", "1"), ("stderr", "1"), ("tail", lines.map(String.init) ?? "all")]
        let request = try api.request(.get, "/containers/\(id)/logs", query: query)
        let timeout = configuration.requestTimeout
        return try await api.stream(request, operation: "logs of \(taskID)", deadline: .now() + timeout.timeAmount,
                                    timeout: timeout) { status, body in
            if status != 200 {
                let answer = DockerAPI.Response(status: status, body: try await body.collect(upTo: 1 << 16))
                if status == 404 { throw ContainerGone() }
                throw RuntimeError.docker(operation: "logs of \(taskID)", status: status, message: answer.message)
            }
            var demuxer = DockerLogDemuxer()
            var tail = TailBuffer(capacity: limit)
            for try await chunk in body {
                demuxer.feed(chunk.readableBytesView) { tail.append(contentsOf: $0) }
            }
            try Task.checkCancellation()
            return (tail, demuxer.frames)
        }
    }

    /// One API call with a body read in full, bounded by `timeout` (the configured default if nil).
    private func call(_ verb: DockerAPI.Verb, _ path: String, query: [(String, String)] = [],
                      json: (any Encodable)? = nil, operation: String, timeout: Duration? = nil) async throws -> DockerAPI.Response {
        let timeout = timeout ?? configuration.requestTimeout
        let request = try api.request(verb, path, query: query, json: json)
        return try await api.send(request, operation: operation, timeout: timeout)
    }

    // MARK: - Pure helpers

    static func isRunning(_ status: String) -> Bool {
        status == "running" || status == "paused" || status == "restarting" || status == "removing"
    }

    static func outcome(of info: DockerContainerInspect) -> TaskOutcome {
        let code = clamp(info.state.exitCode)
        if info.name == "/" + cancelledName(of: info) { return .cancelled }
        switch info.state.status {
        case "created":
            return .failed(reason: .runtimeError, message: "the container was created but never started"
                + (info.state.error.map { ": \($0)" } ?? ""))
        case "dead":
            return .failed(reason: .runtimeError, message: "Docker marks the container dead: \(info.state.error ?? "no detail")")
        default:
            break
        }
        // Docker flags any OOM kill in the container; a task whose main process still exited 0
        // (it survived losing a child) did its job.
        if info.state.oomKilled, code != 0 { return .oomKilled(code: code) }
        if let error = info.state.error, !error.isEmpty {
            return .failed(reason: .runtimeError, message: error)
        }
        return .exited(code: code)
    }

    static func clamp(_ code: Int64) -> Int32 { Int32(clamping: code) }

    /// `orch-<owner>-<task id>-<epoch>`, with characters Docker refuses in names replaced by `_`.
    static func containerName(owner: String, taskID: String, epoch: UInt64) -> String {
        func clean(_ s: String) -> String {
            String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) ? $0 : "_" })
        }
        return "orch-\(clean(owner))-\(clean(taskID))-\(epoch)"
    }

    private static func cancelledName(of info: DockerContainerInspect) -> String {
        let labels = info.config.labels ?? [:]
        let epoch = labels[RuntimeLabel.epoch].flatMap { UInt64($0) } ?? 0
        return containerName(owner: labels[RuntimeLabel.owner] ?? "", taskID: labels[RuntimeLabel.taskID] ?? "", epoch: epoch)
            + "-cancelled"
    }

    /// Docker's stop takes whole seconds; round up so the task gets at least its grace.
    static func wholeSeconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return attoseconds > 0 ? seconds + 1 : seconds
    }

    private static func startError(_ task: RuntimeTask, status: Int, message: String) -> RuntimeError {
        // The command is at fault when the runtime cannot exec it.
        let lowered = message.lowercased()
        if lowered.contains("executable file not found") || lowered.contains("no such file or directory")
            || lowered.contains("permission denied") || lowered.contains("exec format error") {
            return .invalidSpec(taskID: task.taskID, message: message)
        }
        return .docker(operation: "start \(task.taskID)", status: status, message: message)
    }
}

extension Duration {
    /// The same span as NIO's `TimeAmount` (nanoseconds, saturating).
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(seconds < 0 ? .min : .max) }
        return .nanoseconds(nanos.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
