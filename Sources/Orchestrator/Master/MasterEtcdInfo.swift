import ClusterModel
import EtcdAPI
import Raft
import Store

/// What the etcd v3 API of a master reports about the cluster: the members as Raft's applied
/// membership has them (with the addresses in their membership entries and the client addresses
/// the masters registered), Raft state and database size from this master's replica; and the
/// membership changes (`etcdctl member add|remove|promote`), made as the REST API makes them.
struct MasterEtcdInfo: EtcdClusterInfo {
    let server: MasterServer
    let raft: RaftClusterInfo
    let registry: MemberRegistry

    init(server: MasterServer, store: RaftStore, raft parts: MasterServer.RaftParts) {
        self.server = server
        self.registry = parts.registry
        raft = RaftClusterInfo(store: store, memberID: parts.registry.selfID, members: [],
                               clusterID: UInt64(parts.registry.clusterID, radix: 16),
                               databasePath: server.config.dataDir + "/raft.sqlite")
    }

    var clusterID: UInt64 { raft.clusterID }
    var memberID: UInt64 { raft.memberID }

    func members() async throws -> [EtcdMember] {
        server.members().map(Self.etcd)
    }

    static func etcd(_ m: MasterMember) -> EtcdMember {
        var member = EtcdMember(id: m.id, name: m.name, peerURLs: m.rpcAddress.isEmpty ? [] : ["http://\(m.rpcAddress)"],
                                clientURLs: m.etcdAddress.isEmpty ? [] : ["http://\(m.etcdAddress)"])
        member.isLearner = m.isLearner
        return member
    }

    func status() async throws -> EtcdMemberStatus { try await raft.status() }

    func backup() async throws -> [UInt8] { try await server.backup().encoded }

    func addMember(peerURLs: [String], isLearner: Bool) async throws -> (member: EtcdMember, members: [EtcdMember]) {
        // etcd names the peer URL; we take its host:port as the new master's --rpc-addr. The new
        // member is always added as a learner and promoted once caught up (thesis §4.2.1), even
        // without --learner: a voter that starts empty could stall commitment.
        guard peerURLs.count == 1, let address = Self.hostPort(peerURLs[0]) else {
            throw EtcdMembershipError(code: .invalidArgument, message: "give exactly one peer URL, http://HOST:PORT (the new master's --rpc-addr)")
        }
        let answer = try await Self.refusals { try await server.membership(.with {
            $0.action = .add
            $0.rpcAddress = address
        }) }
        let members = answer.members.map { m in
            Self.etcd(MasterMember(id: m.id, name: m.name, rpcAddress: m.rpcAddress, apiAddress: m.apiAddress,
                                    etcdAddress: m.etcdAddress, isLearner: m.learner))
        }
        guard let added = members.first(where: { $0.id == answer.memberID }) else {
            throw EtcdAPIError.unavailable(reason: "etcdserver: the member was added but is not listed yet")
        }
        return (added, members)
    }

    func removeMember(id: UInt64) async throws -> [EtcdMember] {
        _ = try await Self.refusals { try await server.membership(.with {
            $0.action = .remove
            $0.memberID = id
        }) }
        return server.members().map(Self.etcd)
    }

    func promoteMember(id: UInt64) async throws -> [EtcdMember] {
        _ = try await Self.refusals { try await server.membership(.with {
            $0.action = .promote
            $0.memberID = id
        }) }
        return server.members().map(Self.etcd)
    }

    /// A refusal keeps its gRPC code and message for etcdctl; a missing leader is etcd's "no leader".
    static func refusals<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as MembershipError where error.kind != .unavailable {
            throw EtcdMembershipError(code: error.rpcCode, message: error.message)
        } catch let error as MembershipError {
            throw EtcdAPIError.unavailable(reason: "etcdserver: \(error.message)")
        }
    }

    /// `http://host:port` (or `https://`, or bare `host:port`) to `host:port`.
    static func hostPort(_ url: String) -> String? {
        var rest = Substring(url)
        for scheme in ["http://", "https://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        return HostPort(parsing: String(rest))?.description
    }
}
