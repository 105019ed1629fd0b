import Agent
import ArgumentParser
import ClusterModel
import ClusterSecurity
import CommandLineSupport
import Foundation
import Logging

/// `worker`: joins the masters and runs the tasks they assign.
@main
struct WorkerCommand: EnvironmentConfigurable {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "A worker of the orchestrator: joins any master and runs tasks as containers or processes.",
        discussion: "Every flag can also be set as ORCH_<FLAG> in the environment (e.g. ORCH_MASTERS).")

    @Option(help: "Masters' rpc addresses: HOST:PORT,...") var masters = "127.0.0.1:9090"
    @Option(help: "The cluster's join token (visible in ps: prefer --join-token-file or ORCH_JOIN_TOKEN).") var joinToken: String?
    @Option(help: "A file holding the join token (one trailing newline is ignored).") var joinTokenFile: String?
    @Option(help: "docker, process (tasks run unisolated on this host), or auto (docker; fails when no engine answers).")
    var runtime = "docker"
    @Option(help: "Keeps the node id and the process runtime's files.") var dataDir = "./worker-data"
    @Option(help: "Docker Engine API socket.") var dockerSocket = "/var/run/docker.sock"
    @Option(help: "Millicores offered (default: with Docker, the Docker host's CPUs; else the machine's or its cgroup's).")
    var cpu: Int?
    @Option(help: "Megabytes offered (default: with Docker, the Docker host's memory; else the machine's or its cgroup's).")
    var memory: Int?
    @Option(help: "Node labels: k=v,... (keys starting with orchestrator. are reserved).") var labels = ""
    @Option(help: "Where masters fetch task logs from this worker (default 127.0.0.1:0; port 0: a free port, advertised as bound).")
    var listenAddr: String?
    @Option(help: "The address masters use to reach --listen-addr (default: it, with 0.0.0.0 replaced by the host name and port 0 by the bound port).")
    var advertiseAddr: String?
    @Option(help: "trace, debug, info, notice, warning, error.") var logLevel = "notice"
    @Option(help: "Processes each task container may hold (Docker runtime).") var taskPidsLimit: Int64 = 1024
    @Option(help: "Size of one log file of a task container before it rotates: 10m, 500k, 1g (Docker runtime).")
    var taskLogMaxSize = "10m"
    @Option(help: "Log files kept per task container (Docker runtime).") var taskLogMaxFiles = 3
    @Option(help: "Milliseconds without an acknowledged heartbeat by which every task has been stopped (SIGTERM a fifth of it earlier, at most 10 s); only shortens the masters' lease (--node-down-after minus two heartbeat intervals).")
    var leaseMs: Int64?
    @Flag(help: "Let --listen-addr bind beyond loopback without TLS (warns).") var insecure = false
    @Option(help: "The cluster CA's certificate (PEM): with --tls-cert and --tls-key, mutual TLS to the masters and on --listen-addr.")
    var tlsCa: String?
    @Option(help: "This worker's certificate (PEM), from `master tls init --worker NAME`: it admits the worker without a join token.")
    var tlsCert: String?
    @Option(help: "This worker's private key (PEM).") var tlsKey: String?

    static let valueFlags = ["masters", "join-token", "join-token-file", "runtime", "data-dir", "docker-socket", "cpu", "memory", "labels",
                             "listen-addr", "advertise-addr", "log-level", "task-pids-limit", "task-log-max-size", "task-log-max-files", "lease-ms",
                             "tls-ca", "tls-cert", "tls-key"]

    static let switchFlags = ["insecure"]

    static func main() async { await mainMergingEnvironment() }

    mutating func run() async throws {
        Self.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "worker")
        var config = try makeConfig()
        guard let kind = RuntimeKind(rawValue: runtime) else {
            throw ValidationError("--runtime: \"\(runtime)\" is not docker, process or auto")
        }
        let policy = TaskContainerPolicy(pidsLimit: taskPidsLimit, logMaxSize: taskLogMaxSize, logMaxFiles: taskLogMaxFiles)
        do { try policy.validate() } catch { throw ValidationError("\(error)") }
        // The log service checks no token, so only TLS (or loopback) protects it.
        let listener = ListenerPolicy.Listener(flag: "listen-addr", host: config.listenAddress.host, port: config.listenAddress.port,
                                               guarded: .tlsOnly, tokenSet: false)
        switch ListenerPolicy.decide([listener], tlsEnabled: config.tls != nil, insecure: insecure) {
        case .refuse(let message): throw ValidationError(message)
        case .start(let warnings): for warning in warnings { logger.warning("\(warning)") }
        }
        // Held until the process ends: a second worker in this directory would be the same node.
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock.acquire(dataDir: config.dataDir)
        } catch let error as WorkerError {
            throw ValidationError("\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let id = try WorkerAgent.loadOrCreateNodeID(dataDir: config.dataDir, hostname: config.hostname)
        let made: (any TaskRuntime, RuntimeChoice)
        do {
            made = try await kind.make(owner: id, dataDir: config.dataDir,
                                       docker: .init(socketPath: dockerSocket, containerPolicy: policy), logger: logger)
        } catch let error as RuntimeSelectionError {
            throw ValidationError("\(error)")
        }
        let (taskRuntime, chosen) = made
        config.labels[NodeLabels.runtime] = chosen.kind.rawValue
        // Tasks run as containers on the Docker host, which may be bigger than this worker's own
        // cgroup (a worker in a container starts sibling containers): offer the host's capacity.
        if let docker = taskRuntime as? DockerRuntime, cpu == nil || memory == nil {
            do {
                let host = try await docker.hostCapacity()
                config.capacity = Resources(cpu: cpu ?? host.cpu, memory: memory ?? host.memory)
            } catch {
                logger.warning("cannot read the Docker host's capacity (\(error)); offering this machine's")
            }
        }
        logger.notice("worker starting", metadata: ["node": "\(id)", "runtime": "\(chosen.kind.rawValue)", "masters": "\(masters)",
                                                    "cpu": "\(config.capacity.cpu)", "memory": "\(config.capacity.memory)"])
        let agent = WorkerAgent(config: config, runtime: taskRuntime, logger: logger)
        let stopSignal = await StopSignals.trap()
        // The runtime's connections are closed before it is released, however the agent ends.
        var failure: (any Error)?
        do { try await Self.run(agent, until: stopSignal, logger: logger) } catch { failure = error }
        try? await taskRuntime.shutdown()
        if let error = failure as? WorkerError { throw ValidationError("\(error)") }
        if let failure { throw failure }
    }

    /// Runs the agent until it fails or a stop signal arrives.
    /// SIGTERM/SIGINT: stop taking assignments and exit; running tasks keep running and are
    /// adopted when this worker (same --data-dir) comes back.
    static func run(_ agent: WorkerAgent, until stopSignal: @escaping @Sendable () async -> Void, logger: Logger) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await agent.run() }
            group.addTask {
                await stopSignal()
                logger.notice("stopping: running tasks are left running, to be adopted when this worker comes back")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    func makeConfig() throws -> WorkerConfig {
        let list = masters.split(separator: ",").map(String.init)
        let parsed = list.compactMap(HostPort.init(parsing:))
        guard !parsed.isEmpty, parsed.count == list.count else { throw ValidationError("--masters: \"\(masters)\" is not HOST:PORT,...") }
        let tls: TLSMaterial?
        do {
            tls = try TLSFlags.load(ca: tlsCa, certificate: tlsCert, key: tlsKey)
        } catch {
            throw ValidationError("\(error)")
        }
        let listenText = listenAddr ?? "\(ListenerPolicy.defaultHost(.tlsOnly, tokenSet: false, tlsEnabled: tls != nil)):0"
        guard let listen = HostPort(parsing: listenText) else { throw ValidationError("--listen-addr: \"\(listenText)\" is not HOST:PORT") }
        let labelMap: [String: String]
        let token: String?
        do {
            labelMap = try NodeLabels.parse(labels)
            token = try TokenFlags.resolve(flag: "join-token", value: joinToken, file: joinTokenFile)
        } catch {
            throw ValidationError("\(error)")
        }
        let detected = MachineCapacity.detect()
        let capacity = Resources(cpu: cpu ?? detected.cpu, memory: memory ?? detected.memory)
        guard capacity.cpu > 0, capacity.memory > 0 else { throw ValidationError("--cpu and --memory must be positive") }
        let hostname = ProcessInfo.processInfo.hostName
        let advertise: HostPort
        if let advertiseAddr {
            guard let a = HostPort(parsing: advertiseAddr) else { throw ValidationError("--advertise-addr: \"\(advertiseAddr)\" is not HOST:PORT") }
            advertise = a
        } else {
            advertise = listen.host == "0.0.0.0" ? HostPort(host: hostname, port: listen.port) : listen
        }
        var config = WorkerConfig(masters: parsed, joinToken: token ?? "", dataDir: dataDir, capacity: capacity, labels: labelMap,
                                  listenAddress: listen, advertiseAddress: advertise, hostname: hostname)
        config.tls = tls
        if let leaseMs {
            // Below a few hundred ms a healthy worker would stop its tasks between two heartbeats.
            guard leaseMs >= 500 else { throw ValidationError("--lease-ms must be at least 500 (got \(leaseMs))") }
            config.lease = .milliseconds(leaseMs)
        }
        return config
    }
}
