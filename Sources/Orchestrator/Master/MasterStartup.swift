import ClusterModel
import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import Logging
import Raft

/// `<data-dir>/cluster.json`: which cluster a data directory belongs to, and as which member. It
/// is written before the Raft log is, so a directory with a log always says whose log it is.
struct ClusterIdentity: Codable, Sendable, Equatable {
    /// The cluster's id (hex), also in every member's replicated context.
    var cluster: String
    /// This master's Raft id.
    var memberID: UInt64
    var name: String
    /// The members known when the directory was created (the founding `--peers`, or the join
    /// answer), for members whose membership entry carries no context.
    var known: [Known]
    /// Whether this member founded the cluster (its log starts with the bootstrap entries).
    var founding: Bool

    struct Known: Codable, Sendable, Equatable {
        var id: UInt64
        var name: String
        var rpc: String
        var api: String
        var etcd: String
        var learner: Bool
    }

    static func path(_ dataDir: String) -> String { dataDir + "/cluster.json" }

    static func load(dataDir: String) throws -> ClusterIdentity? {
        guard let data = FileManager.default.contents(atPath: path(dataDir)) else { return nil }
        do {
            return try JSONDecoder().decode(ClusterIdentity.self, from: data)
        } catch {
            throw MasterConfigError.invalid("\(path(dataDir)) is unreadable (\(error)); it names the cluster this data directory belongs to")
        }
    }

    /// Written to a temporary file, synced and renamed, so a crash leaves the old file or the new one.
    func save(dataDir: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let temporary = Self.path(dataDir) + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw MasterConfigError.invalid("cannot write \(temporary)")
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        try handle.synchronize()
        try handle.close()
        guard rename(temporary, Self.path(dataDir)) == 0 else {
            throw MasterConfigError.invalid("cannot write \(Self.path(dataDir)): errno \(errno)")
        }
    }

    var knownContexts: [NodeID: MemberContext] {
        Dictionary(uniqueKeysWithValues: known.map {
            ($0.id, MemberContext(name: $0.name, rpc: $0.rpc, api: $0.api, etcd: $0.etcd, cluster: cluster))
        })
    }
}

/// How a master starts: bootstraps a new cluster from `--peers`, restarts from its data
/// directory, or joins a running cluster (`--join`).
public struct MasterStartup: Sendable {
    enum Mode: Sendable, Equatable { case bootstrap, restart, joined }
    let mode: Mode
    let identity: ClusterIdentity

    /// Decides without the network, from the data directory and `--peers`: what tests that build a
    /// `MasterServer` directly get. A data directory from before `cluster.json` existed gets one.
    static func local(_ config: MasterConfig) throws -> MasterStartup {
        if let identity = try ClusterIdentity.load(dataDir: config.dataDir) {
            return MasterStartup(mode: .restart, identity: identity)
        }
        let hasLog = FileManager.default.fileExists(atPath: config.dataDir + "/raft.sqlite")
        if !hasLog, config.join != nil {
            throw MasterConfigError.invalid("--join needs the network: start through `master`, which calls MasterStartup.prepare")
        }
        let identity = founding(config)
        try identity.save(dataDir: config.dataDir)
        return MasterStartup(mode: hasLog ? .restart : .bootstrap, identity: identity)
    }

    static func founding(_ config: MasterConfig) -> ClusterIdentity {
        let ids = Dictionary(uniqueKeysWithValues: config.peers.enumerated().map { ($1.name, NodeID($0 + 1)) })
        return ClusterIdentity(
            cluster: foundingClusterID(config.peers), memberID: ids[config.id] ?? 0, name: config.id,
            known: config.peers.enumerated().map { i, peer in
                .init(id: NodeID(i + 1), name: peer.name, rpc: peer.address.description, api: "", etcd: "", learner: false)
            },
            founding: true)
    }

    /// What `master` does before it builds its parts: `local`, after the checks and the join that
    /// need the network.
    ///
    /// - With `--join` and an empty data directory: asks the cluster (through the given master's
    ///   rpc address) to add this master as a learner, and records the answer. The master then
    ///   catches up and asks to be promoted (thesis §4.2.1).
    /// - With an empty data directory and several `--peers`: asks the peers whether their cluster
    ///   already runs with this master in it (or without it). Then bootstrapping would found a second
    ///   cluster under the same names (and vote twice in the first one's terms), so it refuses.
    public static func prepare(_ config: MasterConfig, logger: Logger) async throws -> MasterStartup {
        let hasLog = FileManager.default.fileExists(atPath: config.dataDir + "/raft.sqlite")
        let identity = try ClusterIdentity.load(dataDir: config.dataDir)
        if hasLog || identity != nil {
            if config.join != nil { logger.notice("--join ignored: \(config.dataDir) already holds this master's state") }
            return try local(config)
        }
        let clients = PeerClients(security: config.tls?.grpcClientSecurity() ?? .plaintext)
        defer { clients.shutdown() }
        if let join = config.join {
            let identity = try await joinCluster(config, via: join, clients: clients, logger: logger)
            try identity.save(dataDir: config.dataDir)
            return MasterStartup(mode: .joined, identity: identity)
        }
        // All peers at once, each bounded: at a cluster's first start they are starting too.
        let refusal = await withTaskGroup(of: String?.self) { group in
            for peer in config.peers where peer.name != config.id {
                group.addTask { await probe(peer.address, config: config, clients: clients) }
            }
            for await answer in group where answer != nil { return answer }
            return nil
        }
        if let refusal { throw MasterConfigError.invalid(refusal) }
        return try local(config)
    }

    /// Asks `peer` for its cluster; a reason to refuse, or nil (no answer, or a cluster being founded).
    static func probe(_ peer: HostPort, config: MasterConfig, clients: PeerClients) async -> String? {
        // A peer that is not listening fails at once (no waiting for it to come up).
        guard let answer = try? await MembershipCall.send(.with { $0.action = .list }, to: peer, clients: clients,
                                                          timeout: .seconds(2), waitForReady: false) else { return nil }
        let member = answer.members.contains { $0.name == config.id }
        let ran = answer.started.contains(config.id)
        guard ran || (!answer.members.isEmpty && !member) else { return nil }
        let why = ran ? "has run in it before" : "is not one of its members"
        return "refusing to bootstrap a second cluster: cluster \(answer.clusterID) already runs at \(peer) and this master"
            + " (\(config.id)) \(why), but \(config.dataDir) is empty. Remove the old member and start this one with"
            + " --join \(peer) instead (README: Replace a failed master)"
    }

    static func joinCluster(_ config: MasterConfig, via join: HostPort, clients: PeerClients, logger: Logger) async throws -> ClusterIdentity {
        let own = config.peers.first { $0.name == config.id }?.address ?? config.rpcAddress
        let wildcard = ["0.0.0.0", "::"]
        guard !wildcard.contains(own.host) else {
            throw MasterConfigError.invalid("--join: the cluster must reach this master at an address: give --rpc-addr a host, or --peers \(config.id)=HOST:PORT")
        }
        func advertised(_ address: HostPort) -> String {
            HostPort(host: wildcard.contains(address.host) ? own.host : address.host, port: address.port).description
        }
        let request = Orchestrator_V1_MembershipRequest.with {
            $0.action = .add
            $0.join = true
            $0.name = config.id
            $0.rpcAddress = own.description
            $0.apiAddress = advertised(config.apiAddress)
            $0.etcdAddress = config.etcdAddress.map(advertised) ?? ""
        }
        // The cluster may be electing a leader, or the master named may be restarting: try for a minute.
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                let answer = try await MembershipCall.send(request, to: join, clients: clients, timeout: .seconds(10))
                logger.notice("joined the cluster as a learner", metadata: ["cluster": "\(answer.clusterID)", "member-id": "\(answer.memberID)"])
                return ClusterIdentity(
                    cluster: answer.clusterID, memberID: answer.memberID, name: config.id,
                    known: answer.members.map { .init(id: $0.id, name: $0.name, rpc: $0.rpcAddress, api: $0.apiAddress, etcd: $0.etcdAddress, learner: $0.learner) },
                    founding: false)
            } catch let error as MembershipError where error.kind != .unavailable {
                throw MasterConfigError.invalid("--join \(join): \(error.message)")
            } catch {
                guard ContinuousClock.now < deadline else {
                    throw MasterConfigError.invalid("--join \(join): no answer from the cluster within a minute: \(error)")
                }
                logger.notice("--join: the cluster did not answer yet; trying again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}

/// One `Masters/Membership` call, its RPC errors turned back into `MembershipError`s.
enum MembershipCall {
    static func send(_ request: Orchestrator_V1_MembershipRequest, to address: HostPort, clients: PeerClients,
                     timeout: Duration, waitForReady: Bool = true) async throws -> Orchestrator_V1_MembershipResponse {
        let stub = Orchestrator_V1_Masters.Client(wrapping: try clients.client(for: address))
        var options = CallOptions.defaults
        options.timeout = timeout
        options.waitForReady = waitForReady
        do {
            return try await stub.membership(request, options: options)
        } catch let error as RPCError {
            throw MembershipError(error)
        }
    }
}
