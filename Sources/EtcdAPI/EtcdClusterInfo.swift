import Foundation
import GRPCCore
import Raft
import Store

/// One member of the cluster as etcd's `Cluster/MemberList` reports it.
public struct EtcdMember: Sendable, Hashable {
    /// The member id (etcdctl prints it in hex); our masters use their Raft node id.
    public var id: UInt64
    public var name: String
    /// Where the other members reach it (our masters: the internal gRPC address).
    public var peerURLs: [String]
    /// Where clients reach its etcd API (our masters: the etcd-compatible gRPC address).
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// What `Maintenance/Status` reports about the answering member (`etcdctl endpoint status`).
public struct EtcdMemberStatus: Sendable, Hashable {
    /// The member this one believes leads, 0 when none is known.
    public var leaderID: UInt64
    public var raftTerm: UInt64
    /// The Raft commit index.
    public var raftIndex: UInt64
    public var raftAppliedIndex: UInt64
    /// Bytes the member's database takes on disk, and bytes of it in use.
    public var dbSize: Int64
    public var dbSizeInUse: Int64
    public var isLearner: Bool
    /// Problems to report (etcd lists alarms here); empty when healthy.
    public var errors: [String]

    public init(leaderID: UInt64, raftTerm: UInt64, raftIndex: UInt64, raftAppliedIndex: UInt64,
                dbSize: Int64, dbSizeInUse: Int64, isLearner: Bool = false, errors: [String] = []) {
        self.leaderID = leaderID
        self.raftTerm = raftTerm
        self.raftIndex = raftIndex
        self.raftAppliedIndex = raftAppliedIndex
        self.dbSize = dbSize
        self.dbSizeInUse = dbSizeInUse
        self.isLearner = isLearner
        self.errors = errors
    }
}

/// What only the master knows and the etcd API reports: who the members are, who leads, how far
/// Raft has got. `RaftClusterInfo` implements it for a `RaftStore`; a master may implement it
/// itself (e.g. with member addresses from its configuration).
public protocol EtcdClusterInfo: Sendable {
    /// Identifies the cluster in every response header (etcd's `cluster_id`); the same on every
    /// member.
    var clusterID: UInt64 { get }
    /// This member's id (etcd's `member_id` in response headers).
    var memberID: UInt64 { get }
    /// The version `endpoint status` prints.
    var version: String { get }
    /// Every member, this one included.
    func members() async throws -> [EtcdMember]
    /// This member's Raft and database state.
    func status() async throws -> EtcdMemberStatus
    /// `Cluster/MemberAdd`: adds a member reached at `peerURLs`; returns it and the new member list.
    func addMember(peerURLs: [String], isLearner: Bool) async throws -> (member: EtcdMember, members: [EtcdMember])
    /// `Cluster/MemberRemove`: returns the members left.
    func removeMember(id: UInt64) async throws -> [EtcdMember]
    /// `Cluster/MemberPromote`: returns the member list.
    func promoteMember(id: UInt64) async throws -> [EtcdMember]
    /// `Maintenance/Snapshot`: the whole backup file, consistent as of the call, that
    /// `etcdctl snapshot save` writes (its length must be 32 more than a multiple of 512, the last
    /// 32 bytes a SHA-256 of the rest, as etcd's).
    func backup() async throws -> [UInt8]
}

/// A membership request refused, with the gRPC code etcd answers it with (etcdctl prints the
/// message): FAILED_PRECONDITION for a change the cluster's state forbids now, NOT_FOUND for an
/// unknown member, INVALID_ARGUMENT for bad input.
public struct EtcdMembershipError: Error, Sendable, Equatable {
    public var code: RPCError.Code
    public var message: String

    public init(code: RPCError.Code, message: String) {
        self.code = code
        self.message = message
    }
}

extension EtcdClusterInfo {
    public var version: String { EtcdClusterInfoDefaults.version }

    public func addMember(peerURLs: [String], isLearner: Bool) async throws -> (member: EtcdMember, members: [EtcdMember]) {
        throw EtcdAPIError.unimplemented(method: "etcdserverpb.Cluster/MemberAdd", reason: "this server's membership is fixed")
    }

    public func removeMember(id: UInt64) async throws -> [EtcdMember] {
        throw EtcdAPIError.unimplemented(method: "etcdserverpb.Cluster/MemberRemove", reason: "this server's membership is fixed")
    }

    public func promoteMember(id: UInt64) async throws -> [EtcdMember] {
        throw EtcdAPIError.unimplemented(method: "etcdserverpb.Cluster/MemberPromote", reason: "this server's membership is fixed")
    }

    public func backup() async throws -> [UInt8] {
        throw EtcdAPIError.unimplemented(method: "etcdserverpb.Maintenance/Snapshot", reason: "this server takes no backups")
    }
}

/// Defaults shared by implementations of `EtcdClusterInfo`.
public enum EtcdClusterInfoDefaults {
    /// The etcd API version we speak, marked so nobody mistakes us for etcd itself.
    public static let version = "3.4.0-compatible"

    /// A cluster id derived from the member ids (FNV-1a over the sorted ids), so every member
    /// computes the same one without coordination; never 0.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for id in memberIDs.sorted() {
            for shift in stride(from: 0, to: 64, by: 8) {
                hash ^= (id >> UInt64(shift)) & 0xff
                hash = hash &* 0x100_0000_01b3
            }
        }
        return hash == 0 ? 1 : hash
    }
}

/// `EtcdClusterInfo` for a master on the built-in store: members from the configuration, Raft
/// state from the `RaftStore`, database size from the SQLite files.
public struct RaftClusterInfo: EtcdClusterInfo {
    public let clusterID: UInt64
    public let memberID: UInt64
    private let store: RaftStore
    private let configuredMembers: [EtcdMember]
    private let databasePath: String?

    /// - Parameters:
    ///   - store: this master's replica.
    ///   - memberID: this master's Raft node id.
    ///   - members: every master (ids are Raft node ids); learners are taken from Raft's
    ///     configuration, whatever `isLearner` says here.
    ///   - clusterID: nil derives one from the member ids.
    ///   - databasePath: the SQLite file of the Raft log (its `-wal` and `-shm` files count too);
    ///     nil reports size 0.
    public init(store: RaftStore, memberID: NodeID, members: [EtcdMember], clusterID: UInt64? = nil,
                databasePath: String? = nil) {
        self.store = store
        self.memberID = memberID
        self.configuredMembers = members
        self.clusterID = clusterID ?? EtcdClusterInfoDefaults.clusterID(memberIDs: members.map(\.id))
        self.databasePath = databasePath
    }

    public func members() async throws -> [EtcdMember] {
        let learners = Set(await store.status().confState.learners)
        return configuredMembers.map { member in
            var member = member
            member.isLearner = learners.contains(member.id)
            return member
        }
    }

    public func status() async throws -> EtcdMemberStatus {
        let raft = await store.status()
        let size = databaseSize()
        return EtcdMemberStatus(
            leaderID: raft.leader, raftTerm: raft.term, raftIndex: raft.commitIndex,
            raftAppliedIndex: raft.appliedIndex, dbSize: size, dbSizeInUse: size,
            isLearner: raft.confState.learners.contains(memberID),
            // etcd lists its alarms here too (`etcdctl endpoint status` prints them as ERRORS).
            errors: store.alarms().map(\.description))
    }

    private func databaseSize() -> Int64 {
        guard let databasePath else { return 0 }
        var total: Int64 = 0
        for path in [databasePath, databasePath + "-wal", databasePath + "-shm"] {
            if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber {
                total += size.int64Value
            }
        }
        return total
    }
}
