import Agent
import ArgumentParser
import ClusterModel
import CommandLineSupport
import Foundation
import Logging
import Orchestrator

/// `master` (or `master serve`): one master of the cluster. `master --dev` runs a whole trial
/// cluster in one process. The default subcommand of `MasterCommand`, so the flags work without
/// naming it.
struct ServeCommand: EnvironmentConfigurable {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a master: replicated state, scheduling, REST API (the default subcommand).",
        discussion: "Every flag can also be set as ORCH_<FLAG> in the environment (e.g. ORCH_PEERS).")

    @Flag(help: "One process for trying it out: single-node store in ./data, API on 127.0.0.1:8080, an embedded worker.")
    var dev = false
    @Option(help: "This master's name; must appear in --peers.") var id = "m1"
    @Option(help: "Where the Raft log lives.") var dataDir = "./data"
    @Option(help: "REST API address.") var apiAddr: String?
    @Option(help: "Raft and worker-protocol address.") var rpcAddr: String?
    @Option(help: "etcd v3 gRPC API of the built-in store (default 0.0.0.0:2379, 127.0.0.1:2379 with --dev); 'off' serves none.")
    var etcdAddr: String?
    @Option(help: "Every master: NAME=HOST:PORT,... (the same list, in the same order, on each). Default: this master alone.")
    var peers: String?
    @Option(help: "raft (built-in) or etcd.") var store = "raft"
    @Option(help: "With --store etcd: http://HOST:2379,...") var etcdEndpoints = ""
    @Option(help: "Default scheduling algorithm: binpacking, roundrobin or spread.") var scheduler = "binpacking"
    @Option(help: "Workers must present this token to join.") var joinToken: String?
    @Option(help: "REST clients must send 'Authorization: Bearer <token>'.") var apiToken: String?
    @Option(help: "Seconds without a heartbeat before a node is not ready.") var nodeNotReadyAfter: Double = 5
    @Option(help: "Seconds without a heartbeat before a node is down and its tasks rescheduled.") var nodeDownAfter: Double = 15
    @Option(help: "trace, debug, info, notice, warning, error.") var logLevel = "notice"
    @Option(help: "Built-in store: revisions of history kept (older ones are compacted, as etcd's --auto-compaction-mode=revision).")
    var historyRevisions: Int64 = 10_000

    static let valueFlags = ["id", "data-dir", "api-addr", "rpc-addr", "etcd-addr", "peers", "store", "etcd-endpoints",
                             "scheduler", "join-token", "api-token", "node-not-ready-after", "node-down-after", "log-level", "history-revisions"]

    static let switchFlags = ["dev"]

    mutating func run() async throws {
        Self.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "master")
        let config: MasterConfig
        do {
            config = try makeConfig()
        } catch {
            throw ValidationError("\(error)")
        }
        let server = try MasterServer(config: config, logger: logger)
        logger.notice("master starting", metadata: ["id": "\(config.id)", "api": "\(config.apiAddress)", "rpc": "\(config.rpcAddress)",
                                                    "etcd-api": "\(config.etcdAddress?.description ?? "off")", "store": "\(config.store.rawValue)"])
        let stopSignal = await StopSignals.trap()
        guard dev else {
            try await server.run(stopWhen: stopSignal)
            return
        }
        // The embedded worker talks to this master over the same gRPC port as any other worker.
        let workerDir = config.dataDir + "/worker"
        let lock = try DataDirectoryLock.acquire(dataDir: workerDir)
        defer { withExtendedLifetime(lock) {} }
        let id = try WorkerAgent.loadOrCreateNodeID(dataDir: workerDir, hostname: ProcessInfo.processInfo.hostName)
        let (runtime, kind) = try await RuntimeKind.auto.make(owner: id, dataDir: workerDir, dockerSocket: "/var/run/docker.sock", logger: logger)
        if kind == .process {
            logger.warning("""
                no Docker engine answers on /var/run/docker.sock: the embedded worker runs tasks as PROCESSES ON THIS HOST, \
                with the task's image and its cpu/memory limits ignored (start dockerd to run them as containers)
                """)
        }
        let detected = MachineCapacity.detect()
        let workerConfig = WorkerConfig(
            masters: [HostPort(host: "127.0.0.1", port: config.rpcAddress.port)], joinToken: config.joinToken ?? "", dataDir: workerDir,
            capacity: Resources(cpu: detected.cpu, memory: detected.memory), labels: ["dev": "true"],
            listenAddress: HostPort(host: "127.0.0.1", port: 0))
        let agent = WorkerAgent(config: workerConfig, runtime: runtime, logger: Logger(label: "worker"))
        logger.notice("embedded worker", metadata: ["node": "\(id)", "runtime": "\(kind.rawValue)"])
        var failure: (any Error)?
        do { try await server.run(additional: [{ try await agent.run() }], stopWhen: stopSignal) } catch { failure = error }
        try? await runtime.shutdown()
        if let failure { throw failure }
    }

    func makeConfig() throws -> MasterConfig {
        let loopback = dev ? "127.0.0.1" : "0.0.0.0"
        func address(_ text: String?, _ flag: String, default port: Int) throws -> HostPort {
            guard let text else { return HostPort(host: loopback, port: port) }
            guard let parsed = HostPort(parsing: text) else { throw MasterConfigError.invalid("--\(flag): \"\(text)\" is not HOST:PORT") }
            return parsed
        }
        let rpc = try address(rpcAddr, "rpc-addr", default: 9090)
        guard let kind = MasterConfig.StoreKind(rawValue: store) else {
            throw MasterConfigError.invalid("--store: \"\(store)\" is not raft or etcd")
        }
        guard let algorithm = SchedulingAlgorithm(rawValue: scheduler) else {
            throw MasterConfigError.invalid("--scheduler: \"\(scheduler)\" is not one of \(SchedulingAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard nodeNotReadyAfter > 0, nodeDownAfter > nodeNotReadyAfter else {
            throw MasterConfigError.invalid("--node-down-after must be greater than --node-not-ready-after, both positive")
        }
        let peerList = try peers.map { try MasterConfig.parsePeers($0) }
            ?? [(id, HostPort(host: rpc.host == "0.0.0.0" ? "127.0.0.1" : rpc.host, port: rpc.port))]
        var health = HealthPolicy()
        health.notReadyAfter = Int64(nodeNotReadyAfter * 1000)
        health.downAfter = Int64(nodeDownAfter * 1000)
        health.leaderGrace = health.downAfter
        let config = MasterConfig(
            id: id, dataDir: dataDir, apiAddress: try address(apiAddr, "api-addr", default: 8080), rpcAddress: rpc,
            etcdAddress: etcdAddr?.lowercased() == "off" ? nil : try address(etcdAddr, "etcd-addr", default: 2379), peers: peerList, store: kind,
            etcdEndpoints: etcdEndpoints.split(separator: ",").map(String.init), scheduler: algorithm,
            joinToken: joinToken, apiToken: apiToken, health: health)
        guard historyRevisions > 0 else { throw MasterConfigError.invalid("--history-revisions must be positive") }
        var withHistory = config
        withHistory.historyRevisions = historyRevisions
        try withHistory.validate()
        return withHistory
    }
}

