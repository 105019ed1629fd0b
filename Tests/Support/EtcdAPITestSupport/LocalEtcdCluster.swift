import EtcdAPI
import Foundation
import Logging
import Raft
import RaftGRPC
import Store
import Synchronization

/// A cluster of built-in store replicas on loopback, assembled the way a master assembles its own:
/// `RaftNode` over `SQLiteLogStorage` in a temporary directory, `GRPCRaftTransport` between the
/// replicas, a `RaftStore` with a `LeaseExpirer`, and an `EtcdAPIServer` per replica on its own
/// port. Writes to a follower are forwarded to the leader in process (masters forward over their
/// internal gRPC; the store cannot tell). For the etcd API tests, `local-etcd` and `bench etcd`.
public final class LocalEtcdCluster: Sendable {
    /// One replica.
    public struct Member: Sendable {
        public let id: NodeID
        public let store: RaftStore
        public let server: EtcdAPIServer
        /// `127.0.0.1:PORT` of its etcd API.
        public let endpoint: String
        let status: @Sendable () async -> RaftStatus
    }

    public let members: [Member]
    public let directory: URL
    private let tasks: Mutex<[Task<Void, Never>]>
    private let storages: [SQLiteLogStorage]

    /// Every member's etcd API endpoint, in id order.
    public var endpoints: [String] { members.map(\.endpoint) }

    /// The member with `id`.
    public func member(_ id: NodeID) -> Member { members.first { $0.id == id }! }

    private init(members: [Member], directory: URL, tasks: [Task<Void, Never>], storages: [SQLiteLogStorage]) {
        self.members = members
        self.directory = directory
        self.tasks = Mutex(tasks)
        self.storages = storages
    }

    /// Starts `size` replicas and returns once a leader is elected and every etcd API listens.
    ///
    /// - Parameters:
    ///   - tickInterval: the Raft tick (elections take 10 to 20 ticks); masters use 100 ms.
    ///   - configuration: the etcd API servers' configuration.
    ///   - storeOptions: the stores' options (each member's `memberID` is set to its id).
    public static func start(size: Int = 3, tickInterval: Duration = .milliseconds(100),
                             configuration: EtcdAPIServer.Configuration = EtcdAPIServer.Configuration(),
                             storeOptions: RaftStore.Options = RaftStore.Options(),
                             logger: Logger = Logger(label: "etcd-local-cluster")) async throws -> LocalEtcdCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-local-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ids = (1...size).map { NodeID($0) }
        var raftPorts: [NodeID: Int] = [:], apiPorts: [NodeID: Int] = [:]
        for id in ids {
            raftPorts[id] = try FreePort.find()
            apiPorts[id] = try FreePort.find()
        }
        let etcdMembers = ids.map { id in
            EtcdMember(id: id, name: "m\(id)", peerURLs: ["http://127.0.0.1:\(raftPorts[id]!)"],
                       clientURLs: ["http://127.0.0.1:\(apiPorts[id]!)"])
        }
        let registry = Mutex<[NodeID: RaftStore]>([:])
        let now = MemoryStore.wallClock
        var members: [Member] = [], tasks: [Task<Void, Never>] = [], storages: [SQLiteLogStorage] = []
        for id in ids {
            let dbPath = directory.appendingPathComponent("raft-\(id).sqlite").path
            let storage = try SQLiteLogStorage(path: dbPath)
            storages.append(storage)
            let peers = Dictionary(uniqueKeysWithValues: ids.map { ($0, (host: "127.0.0.1", port: raftPorts[$0]!)) })
            var nodeLogger = logger
            nodeLogger.logLevel = max(logger.logLevel, .error)
            let transport = GRPCRaftTransport(id: id, listen: ("127.0.0.1", raftPorts[id]!), peers: peers, logger: nodeLogger)
            var options = RaftNode<ContinuousClock>.Options()
            options.tickInterval = tickInterval
            let (machine, hub) = RaftStore.makeStateMachine()
            let node = try RaftNode(config: RaftConfig(id: id), storage: storage, machine: machine, transport: transport,
                                    bootstrap: ids, clock: ContinuousClock(), options: options, logger: nodeLogger)
            var memberOptions = storeOptions
            memberOptions.memberID = id
            let store = RaftStore(node: node, machine: machine, hub: hub, now: now, forward: { leader, command in
                guard let target = registry.withLock({ $0[leader] }) else { throw RaftNodeError.notLeader(leader: noNode) }
                return try await target.handleForwarded(command)
            }, options: memberOptions)
            registry.withLock { $0[id] = store }
            let info = RaftClusterInfo(store: store, memberID: id, members: etcdMembers, databasePath: dbPath)
            var serverLogger = logger
            serverLogger[metadataKey: "member"] = "\(id)"
            let server = EtcdAPIServer(store: store, info: info, listen: ("127.0.0.1", apiPorts[id]!),
                                       logger: serverLogger, configuration: configuration)
            let expirer = LeaseExpirer(store: store, now: now)
            tasks.append(Task { try? await node.run() })
            tasks.append(Task { await expirer.run() })
            tasks.append(Task { await HistoryCompactor(store: store).run() })
            tasks.append(Task {
                do { try await server.run() } catch { serverLogger.error("etcd API server failed: \(error)") }
            })
            members.append(Member(id: id, store: store, server: server, endpoint: "127.0.0.1:\(apiPorts[id]!)",
                                  status: { await node.status() }))
        }
        let cluster = LocalEtcdCluster(members: members, directory: directory, tasks: tasks, storages: storages)
        do {
            for member in members { _ = try await cluster.waitListening(member) }
            _ = try await cluster.waitForLeader()
        } catch {
            await cluster.shutdown()
            throw error
        }
        return cluster
    }

    /// Bounded generously: in a full run on 2 cores a member's server has taken over 10 s to bind.
    private func waitListening(_ member: Member, timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let port = try? await member.server.listeningPort { return port }
            guard ContinuousClock.now < deadline else { throw LocalClusterError("etcd API of member \(member.id) did not listen within \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Polls until one member leads and every member knows it; returns its id.
    public func waitForLeader(timeout: Duration = .seconds(45)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        var seen: [String] = []
        while ContinuousClock.now < deadline {
            var leaders: Set<NodeID> = []
            var leading = false
            seen = []
            let asked = ContinuousClock.now
            for member in members {
                let status = await member.status()
                leaders.insert(status.leader)
                if status.role == .leader { leading = true }
                seen.append("\(member.id): \(status.role) term \(status.term) leader \(status.leader) commit \(status.commitIndex)")
            }
            if leading, leaders.count == 1, let leader = leaders.first, leader != noNode { return leader }
            seen.append("answered in \(ContinuousClock.now - asked)")
            try await Task.sleep(for: .milliseconds(10))
        }
        // What each member last reported tells a stalled election from a member that never started.
        throw LocalClusterError("no leader within \(timeout); last seen: \(seen.joined(separator: "; "))")
    }

    /// Stops every server, expirer and node, closes the databases and removes the directory.
    public func shutdown() async {
        let running = tasks.withLock { tasks in
            defer { tasks = [] }
            return tasks
        }
        for task in running { task.cancel() }
        for task in running { await task.value }
        for storage in storages { storage.close() }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Why a local cluster could not be started.
public struct LocalClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
