import Agent
import ArgumentParser
import ClusterModel
import ClusterSecurity
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
    @Option(help: "REST API address (default 127.0.0.1:8080; beyond loopback see --insecure).") var apiAddr: String?
    @Option(help: "Raft and worker-protocol address (default 127.0.0.1:9090).") var rpcAddr: String?
    @Option(help: "etcd v3 gRPC API of the built-in store (default 127.0.0.1:2379); 'off' serves none.")
    var etcdAddr: String?
    @Option(help: "Every master: NAME=HOST:PORT,... (the same list, in the same order, on each). Default: this master alone.")
    var peers: String?
    @Option(help: "HOST:PORT, the --rpc-addr of a running master: with an empty --data-dir, join its cluster (added as a learner, promoted once caught up) instead of bootstrapping from --peers.")
    var join: String?
    @Option(help: "raft (built-in) or etcd.") var store = "raft"
    @Option(help: "With --store etcd: http://HOST:2379,...") var etcdEndpoints = ""
    @Option(help: "With --store etcd: keep every key under this prefix (e.g. /team-a), so clusters can share one etcd. Starts with '/', no trailing '/'. Default: none (keys under /orchestrator/).")
    var etcdPrefix = ""
    @Option(help: "With --store etcd: the leader compacts etcd to this many revisions behind the current one. Default 0: never (compaction discards history for every user of that etcd; compact it yourself, e.g. etcd's --auto-compaction-retention).")
    var etcdCompactionRetention: Int64 = 0
    @Option(help: "Default scheduling algorithm: binpacking, roundrobin or spread.") var scheduler = "binpacking"
    @Option(help: "Workers must present this token to join (visible in ps: prefer --join-token-file or ORCH_JOIN_TOKEN).")
    var joinToken: String?
    @Option(help: "A file holding the join token (one trailing newline is ignored).") var joinTokenFile: String?
    @Option(help: "REST clients must send 'Authorization: Bearer <token>' (prefer --api-token-file or ORCH_API_TOKEN).")
    var apiToken: String?
    @Option(help: "A file holding the API token (one trailing newline is ignored).") var apiTokenFile: String?
    @Flag(help: "Listen beyond loopback without TLS or tokens (warns for each exposed listener).") var insecure = false
    @Option(help: "The cluster CA's certificate (PEM): with --tls-cert and --tls-key, every port speaks TLS, internal ones mutual TLS.")
    var tlsCa: String?
    @Option(help: "This master's certificate (PEM), from `master tls init`; it must name the hosts in --peers.") var tlsCert: String?
    @Option(help: "This master's private key (PEM).") var tlsKey: String?
    @Option(help: "Seconds without a heartbeat before a node is not ready.") var nodeNotReadyAfter: Double = 5
    @Option(help: "Seconds without a heartbeat before a node is down and its tasks rescheduled.") var nodeDownAfter: Double = 15
    @Option(help: "Seconds an ended task (cancelled, or done with its restart policy) is kept before it is deleted; 0 keeps tasks forever.")
    var taskRetention: Double = 86_400
    @Option(help: "Seconds a node stays down (no task left on it) before it is removed; 0 keeps down nodes.")
    var nodePurgeAfter: Double = 86_400
    @Option(help: "trace, debug, info, notice, warning, error.") var logLevel = "notice"
    @Option(help: "Built-in store: revisions of history kept (older ones are compacted, as etcd's --auto-compaction-mode=revision).")
    var historyRevisions: Int64 = 10_000
    @Option(help: "Built-in store: bytes it may retain (keys, values, their history) before writes that grow it are refused with the NOSPACE alarm, as etcd's flag of that name; 0: no quota. Default 2 GiB.")
    var quotaBackendBytes: Int64?
    @Option(help: "Built-in store: Raft entries applied between two snapshots of the state (each snapshot compacts the log; a member too far behind catches up from the latest snapshot, sent in chunks, instead of the log).")
    var snapshotThreshold: UInt64 = MasterConfig.defaultSnapshotThreshold

    static let valueFlags = ["id", "data-dir", "join", "api-addr", "rpc-addr", "etcd-addr", "peers", "store", "etcd-endpoints", "etcd-prefix", "etcd-compaction-retention",
                             "scheduler", "join-token", "join-token-file", "api-token", "api-token-file", "node-not-ready-after", "node-down-after", "task-retention", "node-purge-after", "log-level", "history-revisions", "quota-backend-bytes", "snapshot-threshold",
                             "tls-ca", "tls-cert", "tls-key"]

    static let switchFlags = ["dev", "insecure"]

    mutating func run() async throws {
        let allocator = MemoryTrimmer.configureAllocator(environment: ProcessInfo.processInfo.environment)
        Self.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "master")
        if !allocator.isEmpty { logger.debug("malloc settings", metadata: ["set": "\(allocator.joined(separator: ", "))"]) }
        let config: MasterConfig
        do {
            config = try makeConfig()
        } catch {
            throw ValidationError("\(error)")
        }
        switch ListenerPolicy.decide(Self.listeners(config), tlsEnabled: config.tls != nil, insecure: insecure) {
        case .refuse(let message): throw ValidationError(message)
        case .start(let warnings): for warning in warnings { logger.warning("\(warning)") }
        }
        // Decided before anything listens: bootstrap, restart, or join (--join); refuses to found a
        // second cluster when the --peers already run one.
        let startup = config.store == .raft ? try await MasterStartup.prepare(config, logger: logger) : nil
        let server = try MasterServer(config: config, logger: logger, startup: startup)
        logger.notice("master starting", metadata: ["id": "\(config.id)", "api": "\(config.apiAddress)", "rpc": "\(config.rpcAddress)",
                                                    "etcd-api": "\(config.etcdAddress?.description ?? "off")", "store": "\(config.store.rawValue)"])
        let signal = await StopSignals.trap()
        // Docker kills at 10 s; the graceful steps take at most about 4 s.
        let stopSignal: @Sendable () async -> Void = {
            await signal()
            StopSignals.exitIfStuck(after: .seconds(8)) { logger.warning("\($0)") }
        }
        guard dev else {
            try await server.run(stopWhen: stopSignal)
            return
        }
        // The embedded worker talks to this master over the same gRPC port as any other worker.
        let workerDir = config.dataDir + "/worker"
        let lock = try DataDirectoryLock.acquire(dataDir: workerDir)
        defer { withExtendedLifetime(lock) {} }
        let id = try WorkerAgent.loadOrCreateNodeID(dataDir: workerDir, hostname: ProcessInfo.processInfo.hostName)
        // `make` logs the choice; without Docker it warns that tasks run as processes on this host.
        let (runtime, choice) = try await RuntimeKind.auto.make(owner: id, dataDir: workerDir, docker: .init(), dev: true, logger: logger)
        let detected = MachineCapacity.detect()
        let workerConfig = WorkerConfig(
            masters: [HostPort(host: "127.0.0.1", port: config.rpcAddress.port)], joinToken: config.joinToken ?? "", dataDir: workerDir,
            capacity: Resources(cpu: detected.cpu, memory: detected.memory), labels: ["dev": "true", NodeLabels.runtime: choice.kind.rawValue],
            listenAddress: HostPort(host: "127.0.0.1", port: 0))
        let agent = WorkerAgent(config: workerConfig, runtime: runtime, logger: Logger(label: "worker"))
        logger.notice("embedded worker", metadata: ["node": "\(id)", "runtime": "\(choice.kind.rawValue)"])
        var failure: (any Error)?
        do { try await server.run(additional: [{ try await agent.run() }], stopWhen: stopSignal) } catch { failure = error }
        try? await runtime.shutdown()
        if let failure { throw failure }
    }

    func makeConfig() throws -> MasterConfig {
        let tls = try TLSFlags.load(ca: tlsCa, certificate: tlsCert, key: tlsKey)
        if tls != nil, dev { throw MasterConfigError.invalid("--dev runs without TLS on loopback: drop --tls-ca, --tls-cert and --tls-key") }
        let joinToken = try TokenFlags.resolve(flag: "join-token", value: self.joinToken, file: joinTokenFile)
        let apiToken = try TokenFlags.resolve(flag: "api-token", value: self.apiToken, file: apiTokenFile)
        /// The flag's address, or its default: public exactly when `guarded` is satisfied.
        func address(_ text: String?, _ flag: String, default port: Int, _ guarded: ListenerPolicy.Guard, tokenSet: Bool = false) throws -> HostPort {
            guard let text else {
                return HostPort(host: ListenerPolicy.defaultHost(guarded, tokenSet: tokenSet, tlsEnabled: tls != nil), port: port)
            }
            guard let parsed = HostPort(parsing: text) else { throw MasterConfigError.invalid("--\(flag): \"\(text)\" is not HOST:PORT") }
            return parsed
        }
        let rpc = try address(rpcAddr, "rpc-addr", default: 9090, .joinToken, tokenSet: !(joinToken ?? "").isEmpty)
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
        let config = MasterConfig(
            id: id, dataDir: dataDir, apiAddress: try address(apiAddr, "api-addr", default: 8080, .apiToken, tokenSet: !(apiToken ?? "").isEmpty), rpcAddress: rpc,
            etcdAddress: etcdAddr?.lowercased() == "off" ? nil : try address(etcdAddr, "etcd-addr", default: 2379, .tlsOnly), peers: peerList, store: kind,
            etcdEndpoints: etcdEndpoints.split(separator: ",").map(String.init), scheduler: algorithm,
            joinToken: joinToken, apiToken: apiToken, health: health)
        guard historyRevisions > 0 else { throw MasterConfigError.invalid("--history-revisions must be positive") }
        var withHistory = config
        withHistory.historyRevisions = historyRevisions
        if let quotaBackendBytes {
            guard kind == .raft else {
                throw MasterConfigError.invalid("--quota-backend-bytes is for the built-in store: with --store etcd, give etcd its own --quota-backend-bytes")
            }
            guard quotaBackendBytes >= 0 else { throw MasterConfigError.invalid("--quota-backend-bytes must be 0 (no quota) or a positive number of bytes") }
            withHistory.quotaBytes = quotaBackendBytes
        }
        guard snapshotThreshold > 0 else { throw MasterConfigError.invalid("--snapshot-threshold must be positive") }
        withHistory.snapshotThreshold = snapshotThreshold
        withHistory.etcdPrefix = etcdPrefix
        withHistory.etcdCompactionRetention = etcdCompactionRetention
        if let join {
            guard !dev else { throw MasterConfigError.invalid("--dev runs a cluster of its own: drop --join") }
            guard let address = HostPort(parsing: join) else { throw MasterConfigError.invalid("--join: \"\(join)\" is not HOST:PORT (a running master's --rpc-addr)") }
            withHistory.join = address
        }
        withHistory.tls = tls
        guard taskRetention >= 0, taskRetention.isFinite else { throw MasterConfigError.invalid("--task-retention must be 0 (forever) or a positive number of seconds") }
        withHistory.taskRetention = taskRetention == 0 ? nil : TaskRetention(retentionMs: Int64(taskRetention * 1000))
        guard nodePurgeAfter >= 0, nodePurgeAfter.isFinite else { throw MasterConfigError.invalid("--node-purge-after must be 0 (never) or a positive number of seconds") }
        withHistory.nodePurge = nodePurgeAfter == 0 ? nil : NodePurge(afterMs: Int64(nodePurgeAfter * 1000))
        try withHistory.validate()
        return withHistory
    }

    /// The master's listeners as the bind policy sees them.
    static func listeners(_ config: MasterConfig) -> [ListenerPolicy.Listener] {
        var list = [
            ListenerPolicy.Listener(flag: "api-addr", host: config.apiAddress.host, port: config.apiAddress.port,
                                    guarded: .apiToken, tokenSet: !(config.apiToken ?? "").isEmpty),
            ListenerPolicy.Listener(flag: "rpc-addr", host: config.rpcAddress.host, port: config.rpcAddress.port,
                                    guarded: .joinToken, tokenSet: !(config.joinToken ?? "").isEmpty),
        ]
        if let etcd = config.etcdAddress, config.store == .raft {
            list.append(.init(flag: "etcd-addr", host: etcd.host, port: etcd.port, guarded: .tlsOnly, tokenSet: false))
        }
        return list
    }
}

