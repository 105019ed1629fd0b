import ClusterModel
import Foundation
import GRPCServing
import Raft
import RaftGRPC
import Synchronization

/// What a master tells the cluster about itself when it is added: the context of its Raft
/// membership entry (JSON), so every replica, and every server that catches up from a snapshot,
/// knows its name and addresses.
struct MemberContext: Codable, Sendable, Equatable {
    /// The master's name (`--id`); empty when added through etcd's MemberAdd, which names none.
    var name: String
    /// Raft and worker protocol (`--rpc-addr` as its peers reach it).
    var rpc: String
    /// REST API; empty when not known yet.
    var api: String
    /// etcd v3 API; empty when not served or not known.
    var etcd: String
    /// The cluster's id (hex), the same in every member's context.
    var cluster: String

    /// Sorted keys: every founding member writes byte-identical bootstrap entries.
    var encoded: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(self)) ?? Data())
    }

    init(name: String, rpc: String, api: String = "", etcd: String = "", cluster: String) {
        self.name = name
        self.rpc = rpc
        self.api = api
        self.etcd = etcd
        self.cluster = cluster
    }

    init?(decoding bytes: [UInt8]) {
        guard !bytes.isEmpty, let value = try? JSONDecoder().decode(Self.self, from: Data(bytes)) else { return nil }
        self = value
    }
}

/// One master of the cluster as this replica knows it.
public struct MasterMember: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var rpcAddress: String
    public var apiAddress: String
    public var etcdAddress: String
    public var isLearner: Bool
}

/// The masters of the cluster, kept in step with the applied Raft membership (`RaftNode`'s
/// `onMembershipChange`): names and addresses for status pages, write forwarding and TLS, and the
/// Raft transport's peers, which it adds and removes as members come and go.
final class MemberRegistry: Sendable {
    private struct State {
        var members: [NodeID: MasterMember] = [:] {
            // Parsed once per membership change, not per forwarded write or status request.
            didSet { rpcAddresses = members.compactMapValues { HostPort(parsing: $0.rpcAddress) } }
        }
        /// Each member's `rpcAddress`, parsed (members without a valid one are absent).
        var rpcAddresses: [NodeID: HostPort] = [:]
        var transport: GRPCRaftTransport?
        var clusterID: String
        var removed = false
    }

    let selfID: NodeID
    /// Members whose entry carried no context (clusters bootstrapped before contexts existed):
    /// their name and address come from `--peers` or from the join answer.
    private let fallback: [NodeID: MemberContext]
    private let state: Mutex<State>
    /// Fired once this master applied its own removal.
    let removedLatch = Latch()

    init(selfID: NodeID, clusterID: String, known: [NodeID: MemberContext], voters: [NodeID]) {
        self.selfID = selfID
        self.fallback = known
        var members: [NodeID: MasterMember] = [:]
        for (id, context) in known {
            members[id] = MasterMember(id: id, name: context.name, rpcAddress: context.rpc, apiAddress: context.api,
                                        etcdAddress: context.etcd, isLearner: !voters.contains(id))
        }
        var initial = State(clusterID: clusterID)
        initial.members = members
        state = Mutex(initial)
    }

    /// Points the transport at the members from now on.
    func attach(_ transport: GRPCRaftTransport) {
        let members = state.withLock { s in
            s.transport = transport
            return s.members
        }
        sync(transport, members)
    }

    /// Takes a new applied membership (on the Raft node's loop: returns at once).
    func update(_ view: MembershipView) {
        // A master that joins starts with no membership until the leader's log or snapshot gives
        // it one: keep the peers from the join answer until then.
        guard !view.confState.members.isEmpty else { return }
        var members: [NodeID: MasterMember] = [:]
        var cluster: String?
        for id in view.confState.members {
            let context = view.members.contexts[id].flatMap(MemberContext.init(decoding:)) ?? fallback[id]
            if let c = context?.cluster, !c.isEmpty { cluster = c }
            members[id] = MasterMember(id: id, name: context?.name ?? "", rpcAddress: context?.rpc ?? "",
                                        apiAddress: context?.api ?? "", etcdAddress: context?.etcd ?? "",
                                        isLearner: view.confState.learners.contains(id))
        }
        let (transport, fire) = state.withLock { s -> (GRPCRaftTransport?, Bool) in
            s.members = members
            if let cluster { s.clusterID = cluster }
            let fire = view.removed && !s.removed
            s.removed = view.removed
            return (s.transport, fire)
        }
        if let transport { sync(transport, members) }
        if fire { removedLatch.fire() }
    }

    /// This master learned from the leader that it was removed (see `watchForRemoval`).
    func markRemoved() {
        let fire = state.withLock { s -> Bool in
            defer { s.removed = true }
            return !s.removed
        }
        if fire { removedLatch.fire() }
    }

    private func sync(_ transport: GRPCRaftTransport, _ members: [NodeID: MasterMember]) {
        for (id, member) in members where id != selfID {
            if let address = HostPort(parsing: member.rpcAddress) { transport.setPeer(id, host: address.host, port: address.port) }
        }
        for id in transport.peers.keys where members[id] == nil { transport.removePeer(id) }
    }

    var members: [MasterMember] { state.withLock { $0.members.values.sorted { $0.id < $1.id } } }
    var clusterID: String { state.withLock { $0.clusterID } }
    var isRemoved: Bool { state.withLock { $0.removed } }

    func member(_ id: NodeID) -> MasterMember? { state.withLock { $0.members[id] } }
    func name(of id: NodeID) -> String? { member(id).map { $0.name.isEmpty ? "\(id)" : $0.name } }
    func id(named name: String) -> NodeID? { state.withLock { s in s.members.values.first { $0.name == name }?.id } }
    func rpcAddress(of id: NodeID) -> HostPort? { state.withLock { $0.rpcAddresses[id] } }
}

/// A cluster id from the founding members (FNV-1a over `name=address` in `--peers` order), so
/// every founding member computes the same one without talking to the others; 16 hex digits.
func foundingClusterID(_ peers: [(name: String, address: HostPort)]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in peers.map({ "\($0.name)=\($0.address)" }).joined(separator: ",").utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return String(format: "%016llx", hash == 0 ? 1 : hash)
}
