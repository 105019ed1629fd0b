import ClusterModel
import ClusterProto
import ClusterSecurity
import EtcdAPI
import EtcdBackend
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Hummingbird
import Logging
import Raft
import RaftGRPC
import Store
import Synchronization

/// Leadership of the built-in store: the Raft role of this replica.
struct RaftLeadership: Leadership {
    let store: RaftStore
    func current() async -> (isLeader: Bool, term: UInt64) {
        let status = await store.status()
        return (status.role == .leader, status.term)
    }
}

/// What a running master knows about itself and its cluster (for `/api/v1/cluster`, `/readyz`,
/// `/metrics` and the etcd API's member list).
public struct MasterStatus: Sendable {
    public var id: String
    public var store: MasterConfig.StoreKind
    public var isLeader: Bool
    /// The leader's name, if known.
    public var leader: String?
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var members: [(name: String, rpcAddress: HostPort)]
    /// The cluster's id (hex); empty with `--store etcd`.
    public var clusterID: String = ""
}

/// One master: the store (built-in Raft replica or external etcd), the internal gRPC port (Raft,
/// write forwarding, the worker protocol), the leader's loop, and the HTTP API. Built by
/// `master`; tests build it in process too.
public final class MasterServer: Sendable {
    public let config: MasterConfig
    public let repository: ClusterRepository
    public let leaderLoop: LeaderLoop
    /// The task and node records in memory, following the store, on every master.
    public let cache: ClusterCache
    let logger: Logger
    /// gRPC clients to other masters (forwarding), with this master's certificate when TLS is
    /// on; the other master's certificate must name the host it is reached at (`--peers`).
    let masterClients: PeerClients
    /// gRPC clients to workers (logs). A worker's address is not known when its certificate is
    /// issued, so only the chain to the cluster CA is checked, not the host name.
    let workerClients: PeerClients
    let masterDirectory = MasterDirectory()
    /// Counters and gauges for `/metrics`.
    public let metrics = MetricsRegistry()
    let now: @Sendable () -> Int64
    /// Times etcd-API leases: steady, so a stepped wall clock neither expires nor extends them.
    let leaseClock = WallClock.steady()
    let parts: Parts
    /// Fired once a stop has begun: `/readyz` answers 503 so clients and load balancers move on.
    /// (A class, not an `Atomic` field: Swift 6.3's optimizer crashes on a noncopyable stored
    /// property of a class whose init throws.)
    let stopping = Latch()

    /// The built-in store's parts.
    struct RaftParts: Sendable {
        let node: RaftNode<ContinuousClock>
        let store: RaftStore
        /// Serves `--rpc-addr`: Raft's stream, and `rpcServices` beside it.
        let transport: GRPCRaftTransport
        /// Write forwarding and the worker protocol.
        let rpcServices: [any RegistrableRPCService]
        /// The members: names, addresses, and the transport's peers (kept in step with Raft's
        /// applied membership).
        let registry: MemberRegistry
        /// How this master started (bootstrap, restart, join).
        let startup: MasterStartup
    }

    /// What differs between the two store kinds.
    enum Parts: Sendable {
        case raft(RaftParts)
        case etcd(store: EtcdStore, election: EtcdLeadership, server: StoppableGRPCServer<HTTP2ServerTransport.Posix>)
    }

    /// Opens the data directory and builds every part, each from the ones it needs (storage, Raft
    /// transport and node, store, repository, services, servers); nothing listens until `run`.
    ///
    /// - Parameter startup: from `MasterStartup.prepare` (what `master` does, with the network:
    ///   joins with `--join`, refuses to found a second cluster); nil decides from the data
    ///   directory and `--peers` alone.
    public init(config: MasterConfig, logger: Logger, startup: MasterStartup? = nil) throws {
        try config.validate()
        self.config = config
        self.logger = logger
        self.masterClients = PeerClients(security: config.tls?.grpcClientSecurity() ?? .plaintext)
        self.workerClients = PeerClients(security: config.tls?.grpcClientSecurity(verifyHostname: false) ?? .plaintext)
        let authorization: CallerAuthorization = config.tls == nil ? .unauthenticated : .mutualTLS
        let now = WallClock.make()
        self.now = now
        if ProcessInfo.processInfo.environment[WallClock.offsetFileVariable] != nil {
            logger.warning("fault injection: this master's wall clock follows \(WallClock.offsetFileVariable) (tests only)")
        }
        let repository: ClusterRepository
        let leadership: any Leadership
        // Every master follows the records in memory: the leader schedules from it, and every
        // master serves /metrics and its workers' assignment streams from it.
        let cache = ClusterCache()
        self.cache = cache
        let membershipHandler = MembershipHandler()
        switch config.store {
        case .raft:
            try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
            let startup = try startup ?? MasterStartup.local(config)
            let identity = startup.identity
            let selfID = identity.memberID
            guard selfID != noNode else { throw MasterConfigError.invalid("\(ClusterIdentity.path(config.dataDir)) names no member id") }
            let known = identity.knownContexts
            let registry = MemberRegistry(selfID: selfID, clusterID: identity.cluster, known: known,
                                          voters: identity.known.filter { !$0.learner }.map(\.id))
            var ids: [NodeID: (host: String, port: Int)] = [:]
            for (id, context) in known { if let address = HostPort(parsing: context.rpc) { ids[id] = (address.host, address.port) } }
            // The founding members' entries carry their addresses (the member table), identically
            // on each: they all derive them from the same --peers.
            let bootstrap: [NodeID] = startup.mode == .bootstrap ? known.keys.sorted() : []
            let bootstrapContexts = startup.mode == .bootstrap ? known.mapValues(\.encoded) : [:]
            let storage = try SQLiteLogStorage(path: config.dataDir + "/raft.sqlite")
            let (machine, hub) = RaftStore.makeStateMachine()
            var transportConfiguration = GRPCRaftTransport.Configuration()
            if let tls = config.tls {
                // A peer's Raft stream is accepted only from the master its certificate names,
                // and carries only that master's messages. Masters are reached at the --peers
                // hosts, which their certificates name (hostnames verified).
                // Members come and go: the registry answers for the current membership.
                transportConfiguration.security = GRPCRaftTransport.Security(
                    server: try .mutualTLS(tls),
                    member: { peer in
                        guard let peer = peer as? AuthenticatedPeer, peer.identity.role == .master else { return nil }
                        return registry.id(named: peer.identity.name)
                    },
                    client: tls.grpcClientSecurity())
            }
            let transport = GRPCRaftTransport(
                id: selfID, listen: (config.rpcAddress.host, config.rpcAddress.port), peers: ids, logger: logger,
                configuration: transportConfiguration, servesPort: false)
            var raftConfig = RaftConfig(id: selfID)
            raftConfig.electionTick = config.electionTicks
            var options = RaftNode<ContinuousClock>.Options()
            options.tickInterval = config.tickInterval
            options.snapshotThreshold = config.snapshotThreshold
            options.onMembershipChange = { view in registry.update(view) }
            registry.attach(transport)
            let node = try RaftNode(config: raftConfig, storage: storage, machine: machine, transport: transport,
                                    bootstrap: bootstrap, bootstrapContexts: bootstrapContexts, clock: ContinuousClock(),
                                    options: options, logger: logger)
            let forwardClient = ForwardClient(clients: masterClients, address: { registry.rpcAddress(of: $0) })
            var storeOptions = RaftStore.Options()
            storeOptions.quotaBytes = config.quotaBytes
            storeOptions.memberID = selfID
            let store = RaftStore(node: node, machine: machine, hub: hub, now: leaseClock,
                                  forward: { leader, command in try await forwardClient.forward(to: leader, command) },
                                  options: storeOptions)
            repository = ClusterRepository(store: store)
            let workers = WorkerService(repository: repository, joinToken: config.joinToken,
                                        heartbeatInterval: config.heartbeatInterval, lease: config.workerLease,
                                        authorization: authorization, now: now, logger: logger, cache: cache)
            leadership = RaftLeadership(store: store)
            parts = .raft(RaftParts(node: node, store: store, transport: transport,
                                    rpcServices: [ForwardService(authorization: authorization, handle: { try await store.handleForwarded($0) },
                                                                 handleBatch: { await store.handleForwarded(batch: $0) },
                                                                 membership: membershipHandler), workers],
                                    registry: registry, startup: startup))
        case .etcd:
            var etcdConfiguration = EtcdStore.Configuration()
            // With the cluster's TLS material, https:// endpoints get the master's certificate:
            // an etcd run with --client-cert-auth and a certificate from the same CA
            // (`master tls init --etcd NAME=HOST`).
            if let tls = config.tls { etcdConfiguration.tls = tls.grpcClientSecurity() }
            let store = try EtcdStore(endpoints: config.etcdEndpoints, configuration: etcdConfiguration)
            // Everything the masters keep goes through one store, so with --etcd-prefix every key
            // (records, the election key, idempotency keys, the masters' directory) is under it.
            let keys: any ClusterStore = config.etcdPrefix.isEmpty
                ? store : NamespacedStore(base: store, prefix: Array(config.etcdPrefix.utf8))
            repository = ClusterRepository(store: keys)
            let workers = WorkerService(repository: repository, joinToken: config.joinToken,
                                        heartbeatInterval: config.heartbeatInterval, lease: config.workerLease,
                                        authorization: authorization, now: now, logger: logger, cache: cache)
            let election = EtcdLeadership(store: keys, masterID: config.id, logger: logger)
            leadership = election
            let tracker = ConnectionTracker()
            let transport = HTTP2ServerTransport.Posix(
                address: .ipv4(host: config.rpcAddress.host == "localhost" ? "127.0.0.1" : config.rpcAddress.host, port: config.rpcAddress.port),
                transportSecurity: config.tls?.grpcServerSecurity() ?? .plaintext, config: .defaults { tracker.install(on: &$0) })
            parts = .etcd(store: store, election: election,
                          server: StoppableGRPCServer(transport: transport, services: [workers], tracker: tracker))
        }
        self.repository = repository
        var loopOptions = LeaderLoop.Options()
        loopOptions.health = config.health
        loopOptions.taskRetention = config.taskRetention
        loopOptions.nodePurge = config.nodePurge
        loopOptions.compactionRetention = config.leaderCompactionRetention
        leaderLoop = LeaderLoop(repository: repository, leadership: leadership, masterID: config.id,
                                defaultAlgorithm: config.scheduler, options: loopOptions, now: now, logger: logger, cache: cache)
        metrics.addCollector { [leaderLoop] in
            MetricsRegistry.leaderLoopFamilies(leaderLoop) + MetricsRegistry.processFamilies()
        }
        membershipHandler.set { [weak self] request in
            guard let self else { throw MembershipError(.unavailable, "stopped", "this master is stopping") }
            return try await self.membership(request)
        }
    }

    /// This master's view of the cluster.
    /// The leader's name as this master last heard, without a trip through the Raft node's loop
    /// (every REST response names it in a header): `status().leader` for the etcd store.
    public func leaderName() async -> String? {
        switch parts {
        case .raft(let raft):
            let leader = raft.store.leaderHint
            return leader == noNode ? nil : raft.registry.name(of: leader)
        case .etcd:
            return await status().leader
        }
    }

    public func status() async -> MasterStatus {
        switch parts {
        case .raft(let raft):
            let s = await raft.store.status()
            return MasterStatus(id: config.id, store: .raft, isLeader: s.role == .leader,
                                leader: raft.registry.name(of: s.leader), term: s.term, commitIndex: s.commitIndex, appliedIndex: s.appliedIndex,
                                members: members().compactMap { m in raft.registry.rpcAddress(of: m.id).map { (m.name, $0) } },
                                clusterID: raft.registry.clusterID)
        case .etcd(_, let election, _):
            let (isLeader, term) = await election.current()
            let leader = try? await repository.leader()
            return MasterStatus(id: config.id, store: .etcd, isLeader: isLeader, leader: isLeader ? config.id : leader?.id,
                                term: term, commitIndex: 0, appliedIndex: 0, members: [])
        }
    }

    /// Runs every part until the calling task is cancelled, or until `stopWhen` returns; throws
    /// when a part cannot start (a port in use, the data directory unusable).
    ///
    /// - Parameter stopWhen: returns when the master should stop gracefully (`master` passes the
    ///   first SIGTERM or SIGINT): see `stopGracefully` for what that does before the parts are
    ///   cancelled.
    public func run(additional: [@Sendable () async throws -> Void] = [],
                    stopWhen: (@Sendable () async -> Void)? = nil) async throws {
        defer {
            masterClients.shutdown()
            workerClients.shutdown()
        }
        let api = try makeAPI()
        try await withThrowingTaskGroup(of: Void.self) { group in
            switch parts {
            case .raft(let raft):
                group.addTask { try await Self.naming("--rpc-addr", self.config.rpcAddress) { try await raft.transport.serve(with: raft.rpcServices) } }
                group.addTask { try await raft.node.run() }
                group.addTask {
                    await self.promoteWhenCaughtUp(raft)
                    await self.watchForRemoval(raft)
                    // Every part runs until the master stops: the first to end stops it.
                    while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                }
                group.addTask { [config, logger] in
                    // A removed master stops, as etcd's does: it is no longer part of the cluster.
                    await raft.registry.removedLatch.wait()
                    guard raft.registry.removedLatch.isFired else { return }
                    logger.critical("this master was removed from the cluster; stopping")
                    throw MasterConfigError.invalid("this master (\(config.id), member \(raft.registry.selfID)) was removed from the cluster;"
                        + " to bring it back, empty \(config.dataDir) and start it with --join")
                }
                group.addTask { await LeaseExpirer(store: raft.store, now: self.leaseClock).run() }
                group.addTask { [config] in await HistoryCompactor(store: raft.store, retain: config.historyRevisions).run() }
                var etcdAPI: EtcdAPIServer?
                if let etcdAddress = config.etcdAddress {
                    let info = MasterEtcdInfo(server: self, store: raft.store, raft: raft)
                    var etcdConfiguration = EtcdAPIServer.Configuration()
                    etcdConfiguration.security = try config.tls.map { try ConnectionSecurity.mutualTLS($0) }
                    let server = EtcdAPIServer(store: raft.store, info: info, listen: (etcdAddress.host, etcdAddress.port), logger: logger,
                                               configuration: etcdConfiguration)
                    etcdAPI = server
                    group.addTask { try await Self.naming("--etcd-addr", etcdAddress) { try await server.run() } }
                }
                collectServerMetrics(raft: raft, etcd: etcdAPI)
            case .etcd(let store, let election, let server):
                group.addTask { try await Self.naming("--rpc-addr", self.config.rpcAddress) { try await server.run() } }
                group.addTask { await election.run() }
                group.addTask {
                    await withTaskCancellationHandler {
                        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                    } onCancel: {
                        Task { try? await store.shutdown() }
                    }
                }
            }
            group.addTask { await self.leaderLoop.run() }
            group.addTask { await MemoryTrimmer().run() }
            group.addTask { await self.cache.run(repository: self.repository) { self.leaderLoop.cacheChanged() } }
            group.addTask {
                await self.masterDirectory.run(repository: self.repository, id: self.config.id,
                                               entry: .init(api: self.advertised(self.config.apiAddress),
                                                            etcd: self.config.etcdAddress.map { self.advertised($0) } ?? "",
                                                            id: self.raftParts?.registry.selfID))
            }
            group.addTask { try await Self.naming("--api-addr", self.config.apiAddress) { try await api.run() } }
            if let stopWhen {
                group.addTask {
                    await stopWhen()
                    guard !Task.isCancelled else { return }
                    await self.stopGracefully(api: api)
                }
            }
            for part in additional { group.addTask { try await part() } }
            // The first part to fail stops the master: a half-running master is worse than none.
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

extension MasterServer {
    var raftParts: RaftParts? {
        if case .raft(let raft) = parts { return raft }
        return nil
    }

    /// Where clients reach one of this master's listen addresses: a wildcard host is replaced by
    /// this master's rpc host (the address its peers already use for it).
    func advertised(_ listen: HostPort) -> String {
        let wildcard = listen.host == "0.0.0.0" || listen.host == "::"
        let own = config.peers.first { $0.name == config.id }?.address.host ?? config.rpcAddress.host
        return HostPort(host: wildcard ? own : listen.host, port: listen.port).description
    }
}
