import Agent
import ArgumentParser
import ClusterModel
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
    @Option(help: "The cluster's join token (master --join-token).") var joinToken = ""
    @Option(help: "docker, process, or auto (docker when its socket answers).") var runtime = "docker"
    @Option(help: "Keeps the node id and the process runtime's files.") var dataDir = "./worker-data"
    @Option(help: "Docker Engine API socket.") var dockerSocket = "/var/run/docker.sock"
    @Option(help: "Millicores offered (default: with Docker, the Docker host's CPUs; else the machine's or its cgroup's).")
    var cpu: Int?
    @Option(help: "Megabytes offered (default: with Docker, the Docker host's memory; else the machine's or its cgroup's).")
    var memory: Int?
    @Option(help: "Node labels: k=v,...") var labels = ""
    @Option(help: "Where masters fetch task logs from this worker (port 0: a free port, advertised as bound).")
    var listenAddr = "0.0.0.0:0"
    @Option(help: "The address masters use to reach --listen-addr (default: it, with 0.0.0.0 replaced by the host name and port 0 by the bound port).")
    var advertiseAddr: String?
    @Option(help: "trace, debug, info, notice, warning, error.") var logLevel = "notice"

    static let valueFlags = ["masters", "join-token", "runtime", "data-dir", "docker-socket", "cpu", "memory", "labels",
                             "listen-addr", "advertise-addr", "log-level"]

    static func main() async { await mainMergingEnvironment() }

    mutating func run() async throws {
        Self.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "worker")
        var config = try makeConfig()
        guard let kind = RuntimeKind(rawValue: runtime) else {
            throw ValidationError("--runtime: \"\(runtime)\" is not docker, process or auto")
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
        let (taskRuntime, chosen) = try await kind.make(owner: id, dataDir: config.dataDir, dockerSocket: dockerSocket, logger: logger)
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
        logger.notice("worker starting", metadata: ["node": "\(id)", "runtime": "\(chosen.rawValue)", "masters": "\(masters)",
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
        guard let listen = HostPort(parsing: listenAddr) else { throw ValidationError("--listen-addr: \"\(listenAddr)\" is not HOST:PORT") }
        var labelMap: [String: String] = [:]
        for item in labels.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, !kv[0].isEmpty else { throw ValidationError("--labels: \"\(item)\" is not KEY=VALUE") }
            labelMap[String(kv[0])] = String(kv[1])
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
        return WorkerConfig(masters: parsed, joinToken: joinToken, dataDir: dataDir, capacity: capacity, labels: labelMap,
                            listenAddress: listen, advertiseAddress: advertise, hostname: hostname)
    }
}
