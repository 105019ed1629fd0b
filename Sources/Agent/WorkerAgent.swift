import ClusterModel
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging

/// How a worker is set up (`worker --help` documents each flag).
public struct WorkerConfig: Sendable {
    /// Any of them will do; the worker moves to the next one when one fails.
    public var masters: [HostPort]
    public var joinToken: String
    /// Keeps the node id (`node-id`), so a restarted worker is the same node.
    public var dataDir: String
    public var capacity: Resources
    public var labels: [String: String]
    /// Where this worker serves logs to the masters, and the address it tells them. Port 0 in
    /// `listenAddress` binds a free port; port 0 in `advertiseAddress` stands for the bound port.
    public var listenAddress: HostPort
    public var advertiseAddress: HostPort
    public var hostname: String
    /// How long a stopped task gets between SIGTERM and SIGKILL.
    public var stopGrace: Duration = .seconds(10)
    /// Reconnection backoff across masters.
    public var backoffInitial: Duration = .milliseconds(50)
    public var backoffMax: Duration = .seconds(2)

    public init(masters: [HostPort], joinToken: String, dataDir: String, capacity: Resources, labels: [String: String] = [:],
                listenAddress: HostPort, advertiseAddress: HostPort? = nil, hostname: String = ProcessInfo.processInfo.hostName) {
        self.masters = masters
        self.joinToken = joinToken
        self.dataDir = dataDir
        self.capacity = capacity
        self.labels = labels
        self.listenAddress = listenAddress
        self.advertiseAddress = advertiseAddress ?? listenAddress
        self.hostname = hostname
    }
}

/// Why a worker stopped trying.
public enum WorkerError: Error, Sendable, CustomStringConvertible {
    /// A master refused the join token: no other master will accept it either.
    case joinRefused(String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .joinRefused(let why): "join refused: \(why)"
        case .invalidConfiguration(let why): why
        }
    }
}

/// The worker: joins any master, heartbeats, follows its assignment stream and runs tasks through
/// a `TaskRuntime`. The decisions are `Supervisor`'s (pure); this actor performs them.
///
/// Tasks never depend on a master connection: when every master is unreachable the worker keeps
/// its tasks running, keeps their endings as reports, and delivers them once a master answers.
public actor WorkerAgent {
    let config: WorkerConfig
    let runtime: any TaskRuntime
    let logger: Logger
    let clients = PeerClients()
    nonisolated let finishedLogs: FinishedLogs
    private var supervisor = Supervisor()
    private(set) public var nodeID: String?
    /// Reports not yet acknowledged by a master, oldest first.
    private var pendingReports: [(taskID: String, epoch: UInt64, report: TaskReport)] = []
    /// How long the runtime took to start each running copy, sent with its `running` report.
    private var startDurations: [String: Int64] = [:]
    private var reportWaiter: CheckedContinuation<Void, Never>?
    /// The last runtime operation per task: the next one waits for it, so that removing an old
    /// copy and starting its replacement (same task id) never overlap.
    private var chains: [String: (token: UInt64, task: Task<Void, Never>)] = [:]
    private var chainTokens: UInt64 = 0
    /// Where masters fetch logs: `config.advertiseAddress` with a port 0 replaced by the bound port.
    private var advertised: HostPort

    public init(config: WorkerConfig, runtime: any TaskRuntime, logger: Logger) {
        self.config = config
        self.runtime = runtime
        self.logger = logger
        self.finishedLogs = FinishedLogs(directory: config.dataDir + "/finished-logs")
        self.advertised = config.advertiseAddress
    }

    var nodeIDPath: String { config.dataDir + "/node-id" }

    /// The node id kept in `dataDir/node-id`, created on first use from the host name and a random
    /// suffix. Chosen by the worker rather than by a master so that the runtime can label what it
    /// starts with it before the first join, and a restarted worker finds its containers.
    public static func loadOrCreateNodeID(dataDir: String, hostname: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let path = dataDir + "/node-id"
        if let saved = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !saved.isEmpty {
            return saved
        }
        let id = NodeInfo.newID(hostname: hostname)
        try id.write(toFile: path, atomically: true, encoding: .utf8)
        return id
    }

    /// The tasks this worker runs now (task id, epoch).
    public var runningTasks: [(taskID: String, epoch: UInt64)] { supervisor.running }

    /// Runs until cancelled. Throws only for what retrying cannot fix (a refused join token).
    public func run() async throws {
        guard !config.masters.isEmpty else { throw WorkerError.invalidConfiguration("--masters is empty") }
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
        nodeID = try Self.loadOrCreateNodeID(dataDir: config.dataDir, hostname: config.hostname)
        try await adopt()
        defer { clients.shutdown() }
        let logServer = makeLogServer()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await logServer.run() }
            defer { group.cancelAll() }
            // Join only once the log port is bound: the masters are told where it is.
            let bound = try await logServer.transport.listeningAddress
            if advertised.port == 0, let port = bound.ipv4?.port ?? bound.ipv6?.port {
                advertised = HostPort(host: advertised.host, port: port)
            }
            logger.notice("serving task logs", metadata: ["listen": "\(config.listenAddress.host):\(bound.ipv4?.port ?? bound.ipv6?.port ?? 0)",
                                                          "advertised": "\(advertised)"])
            group.addTask { try await self.sessions() }
            try await group.next()
        }
    }

    /// Picks up the copies a previous run of this worker left running (found by label).
    private func adopt() async throws {
        let found: [RuntimeTaskInfo]
        do {
            found = try await runtime.list()
        } catch {
            logger.warning("cannot list the runtime's tasks for adoption: \(error)")
            return
        }
        for info in found {
            supervisor.adopted(taskID: info.taskID, epoch: info.epoch)
            if info.running {
                logger.notice("adopted running task", metadata: ["task": "\(info.taskID)", "epoch": "\(info.epoch)"])
                watch(taskID: info.taskID, epoch: info.epoch)
            } else {
                perform(supervisor.ended(taskID: info.taskID, epoch: info.epoch, outcome: info.outcome ?? .cancelled))
            }
        }
    }

    // MARK: Sessions with masters

    private func sessions() async throws {
        var attempt = 0
        var index = 0
        while !Task.isCancelled {
            let master = config.masters[index % config.masters.count]
            do {
                try await session(with: master)
            } catch let error as WorkerError {
                throw error
            } catch {
                if !Task.isCancelled {
                    logger.warning("master \(master) failed: \(error); trying the next one")
                }
            }
            index += 1
            attempt += 1
            // Backoff grows once every master has been tried, so a healthy second master is
            // reached at once while a cluster that is entirely down is not hammered.
            let round = attempt / config.masters.count
            let delay = min(config.backoffInitial * (1 << min(round, 10)), config.backoffMax)
            try await Task.sleep(for: delay * Double.random(in: 0.8...1.2))
            if attempt > 1_000_000 { attempt = config.masters.count }
        }
    }

    private func session(with master: HostPort) async throws {
        let client = try clients.client(for: master)
        let stub = Orchestrator_V1_Workers.Client(wrapping: client)
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        let joined: Orchestrator_V1_JoinResponse
        do {
            joined = try await stub.join(.with {
                $0.joinToken = config.joinToken
                $0.nodeID = nodeID ?? ""
                $0.hostname = config.hostname
                $0.address = advertised.description
                $0.cpuMillicores = Int64(config.capacity.cpu)
                $0.memoryMb = Int64(config.capacity.memory)
                $0.labels = config.labels
            }, options: options)
        } catch let error as RPCError where error.code == .permissionDenied || error.code == .invalidArgument {
            throw WorkerError.joinRefused(error.message)
        }
        if nodeID != joined.nodeID {
            nodeID = joined.nodeID
            try joined.nodeID.write(toFile: nodeIDPath, atomically: true, encoding: .utf8)
        }
        let id = joined.nodeID
        let interval = Duration.milliseconds(max(100, joined.heartbeatIntervalMs))
        logger.notice("joined", metadata: ["node": "\(id)", "master": "\(master)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.heartbeats(stub: stub, nodeID: id, interval: interval) }
            group.addTask { try await self.followAssignments(stub: stub, nodeID: id) }
            group.addTask { try await self.deliverReports(stub: stub, nodeID: id) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func heartbeats(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String, interval: Duration) async throws {
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        while !Task.isCancelled {
            let running = supervisor.running
            let reply = try await stub.heartbeat(.with {
                $0.nodeID = nodeID
                $0.running = running.map { r in .with { $0.taskID = r.taskID; $0.epoch = r.epoch } }
            }, options: options)
            guard reply.known else { throw SessionEnded.unknownNode }
            try await Task.sleep(for: interval)
        }
    }

    enum SessionEnded: Error { case unknownNode, streamEnded }

    private func followAssignments(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String) async throws {
        try await stub.assignments(.with { $0.nodeID = nodeID }) { response in
            for try await set in response.messages {
                var assigned: [AssignedTask] = []
                for a in set.assignments {
                    guard let spec = try? JSONDecoder().decode(TaskSpec.self, from: a.spec) else {
                        self.logger.error("undecodable spec for task \(a.taskID); skipping it")
                        continue
                    }
                    assigned.append(AssignedTask(taskID: a.taskID, epoch: a.epoch, spec: spec))
                }
                await self.received(assigned)
            }
        }
        throw SessionEnded.streamEnded
    }

    private func wakeReporter() {
        reportWaiter?.resume()
        reportWaiter = nil
    }

    private func received(_ set: [AssignedTask]) {
        perform(supervisor.assignments(set))
    }

    private func deliverReports(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String) async throws {
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        while !Task.isCancelled {
            guard let next = pendingReports.first else {
                // Cancellation must end the wait: the session ends (its master died) only once
                // all three of its tasks have returned.
                await withTaskCancellationHandler {
                    await withCheckedContinuation { reportWaiter = $0 }
                } onCancel: {
                    Task { await self.wakeReporter() }
                }
                continue
            }
            let ack = try await stub.reportStatus(.with {
                $0.nodeID = nodeID
                $0.taskID = next.taskID
                $0.epoch = next.epoch
                switch next.report {
                case .running:
                    $0.state = .running
                    $0.runtimeStartMs = startDurations[next.taskID] ?? 0
                case .completed: $0.state = .completed; $0.hasExitCode_p = true; $0.exitCode = 0
                case .failed(let code, let reason):
                    $0.state = .failed
                    $0.reason = reason
                    if let code { $0.hasExitCode_p = true; $0.exitCode = Int32(truncatingIfNeeded: code) }
                case .cancelled(let reason): $0.state = .cancelled; $0.reason = reason
                }
            }, options: options)
            if let first = pendingReports.first, first.taskID == next.taskID, first.epoch == next.epoch {
                pendingReports.removeFirst()
            }
            if !ack.current { perform(supervisor.withdrawn(taskID: next.taskID, epoch: next.epoch)) }
        }
    }

    // MARK: Performing the supervisor's actions

    private func perform(_ actions: [SupervisorAction]) {
        for action in actions {
            switch action {
            case .start(let task):
                chain(task.taskID) { await self.start(task) }
            case .stop(let taskID, let epoch):
                // Not chained behind a start still in progress: a stop must not wait for an image
                // pull. The runtime stops whatever copy of the task exists.
                Task {
                    do {
                        try await self.runtime.stop(taskID: taskID, grace: self.config.stopGrace)
                    } catch {
                        self.logger.warning("stopping task \(taskID) (epoch \(epoch)) failed: \(error)")
                    }
                }
            case .remove(let taskID):
                chain(taskID) {
                    // Keep the output of finished tasks (GET /api/v1/tasks/{id}/logs) after their
                    // container or process files are gone.
                    if let output = try? await self.runtime.logs(taskID: taskID, limit: defaultLogLimit) {
                        self.finishedLogs.store(taskID: taskID, output)
                    }
                    try? await self.runtime.remove(taskID: taskID)
                }
            case .report(let taskID, let epoch, let report):
                pendingReports.append((taskID, epoch, report))
                reportWaiter?.resume()
                reportWaiter = nil
            }
        }
    }

    private func chain(_ taskID: String, _ operation: @escaping @Sendable () async -> Void) {
        let previous = chains[taskID]?.task
        chainTokens += 1
        let token = chainTokens
        chains[taskID] = (token, Task {
            await previous?.value
            await operation()
            await self.chainFinished(taskID, token: token)
        })
    }

    private func chainFinished(_ taskID: String, token: UInt64) {
        if chains[taskID]?.token == token { chains[taskID] = nil }
    }

    private func start(_ task: AssignedTask) async {
        let began = ContinuousClock.now
        do {
            try await runtime.start(task.runtimeTask)
            let took = began.duration(to: .now).components
            startDurations[task.taskID] = took.seconds * 1000 + took.attoseconds / 1_000_000_000_000_000
        } catch {
            logger.warning("task \(task.taskID) did not start: \(error)")
            perform(supervisor.ended(taskID: task.taskID, epoch: task.epoch, outcome: Self.outcome(ofStartError: error)))
            return
        }
        perform(supervisor.started(taskID: task.taskID, epoch: task.epoch))
        watch(taskID: task.taskID, epoch: task.epoch)
    }

    /// Waits for a copy to end, in the background.
    private func watch(taskID: String, epoch: UInt64) {
        Task {
            let outcome: TaskOutcome
            do {
                outcome = try await runtime.wait(taskID: taskID)
            } catch {
                outcome = .failed(reason: .runtimeError, message: "lost track of the task: \(error)")
            }
            await self.ended(taskID: taskID, epoch: epoch, outcome: outcome)
        }
    }

    private func ended(taskID: String, epoch: UInt64, outcome: TaskOutcome) {
        startDurations[taskID] = nil
        perform(supervisor.ended(taskID: taskID, epoch: epoch, outcome: outcome))
    }

    static func outcome(ofStartError error: any Error) -> TaskOutcome {
        (error as? RuntimeError)?.outcome ?? .failed(reason: .runtimeError, message: "\(error)")
    }

    // MARK: Logs for the masters

    private func makeLogServer() -> StoppableGRPCServer<HTTP2ServerTransport.Posix> {
        let tracker = ConnectionTracker()
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: config.listenAddress.host == "localhost" ? "127.0.0.1" : config.listenAddress.host, port: config.listenAddress.port),
            transportSecurity: .plaintext, config: .defaults { tracker.install(on: &$0) })
        return StoppableGRPCServer(transport: transport, services: [LogService(runtime: runtime, finished: finishedLogs)],
                                   tracker: tracker)
    }
}

/// Serves `orchestrator.v1.Worker/Logs` from the runtime.
struct LogService: Orchestrator_V1_Worker.SimpleServiceProtocol {
    let runtime: any TaskRuntime
    let finished: FinishedLogs

    func logs(request: Orchestrator_V1_LogsRequest, context: ServerContext) async throws -> Orchestrator_V1_LogsResponse {
        let limit = request.limitBytes > 0 ? Int(min(request.limitBytes, 1 << 20)) : 64 << 10
        do {
            let data = try await runtime.logs(taskID: request.taskID, limit: limit)
            return .with { $0.data = Data(data) }
        } catch {
            if let kept = finished.load(taskID: request.taskID) { return .with { $0.data = Data(kept.suffix(limit)) } }
            throw RPCError(code: .notFound, message: "no logs for task \(request.taskID) on this worker: \(error)")
        }
    }
}
