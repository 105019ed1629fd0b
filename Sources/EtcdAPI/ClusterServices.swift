import EtcdProto
import GRPCCore
import Store

/// etcd's `Cluster` service: the member list comes from `EtcdClusterInfo`. Membership changes go
/// through the orchestrator, not the etcd API, so those methods are refused by name.
struct ClusterService: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let core: ServerCore

    private static let membershipReason = "membership is managed by the orchestrator's masters"

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws -> Etcdserverpb_MemberListResponse {
        try await etcdCall {
            var response = Etcdserverpb_MemberListResponse()
            response.members = try await core.info.members().map { member in
                var m = Etcdserverpb_Member()
                m.id = member.id
                m.name = member.name
                m.peerUrls = member.peerURLs
                m.clientUrls = member.clientURLs
                m.isLearner = member.isLearner
                return m
            }
            response.header = try await core.currentHeader()
            return response
        }
    }

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws -> Etcdserverpb_MemberAddResponse {
        throw core.unimplemented("etcdserverpb.Cluster/MemberAdd", reason: Self.membershipReason)
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws -> Etcdserverpb_MemberRemoveResponse {
        throw core.unimplemented("etcdserverpb.Cluster/MemberRemove", reason: Self.membershipReason)
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws -> Etcdserverpb_MemberUpdateResponse {
        throw core.unimplemented("etcdserverpb.Cluster/MemberUpdate", reason: Self.membershipReason)
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws -> Etcdserverpb_MemberPromoteResponse {
        throw core.unimplemented("etcdserverpb.Cluster/MemberPromote", reason: Self.membershipReason)
    }
}

/// etcd's `Maintenance` service: what `etcdctl endpoint status`, `endpoint health`, `alarm list`,
/// `defrag` and `check perf` call. There are never alarms (the store has no space quota), and
/// defragmentation has nothing to do (SQLite reuses freed pages).
struct MaintenanceService: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let core: ServerCore

    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        try await etcdCall {
            var response = Etcdserverpb_AlarmResponse()
            response.header = try await core.currentHeader()
            return response
        }
    }

    func status(request: Etcdserverpb_StatusRequest, context: ServerContext) async throws -> Etcdserverpb_StatusResponse {
        try await etcdCall {
            let status = try await core.info.status()
            core.noteTerm(status.raftTerm)
            var response = Etcdserverpb_StatusResponse()
            response.header = try await core.currentHeader()
            response.version = core.info.version
            response.dbSize = status.dbSize
            response.dbSizeInUse = status.dbSizeInUse
            response.leader = status.leaderID
            response.raftIndex = status.raftIndex
            response.raftTerm = status.raftTerm
            response.raftAppliedIndex = status.raftAppliedIndex
            response.errors = status.errors
            response.isLearner = status.isLearner
            return response
        }
    }

    func defragment(request: Etcdserverpb_DefragmentRequest, context: ServerContext) async throws -> Etcdserverpb_DefragmentResponse {
        try await etcdCall {
            var response = Etcdserverpb_DefragmentResponse()
            response.header = try await core.currentHeader()
            return response
        }
    }

    func hash(request: Etcdserverpb_HashRequest, context: ServerContext) async throws -> Etcdserverpb_HashResponse {
        throw core.unimplemented("etcdserverpb.Maintenance/Hash", reason: "there is no bolt backend to hash")
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse {
        throw core.unimplemented("etcdserverpb.Maintenance/HashKV", reason: "not supported")
    }

    func snapshot(request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>,
                  context: ServerContext) async throws {
        throw core.unimplemented("etcdserverpb.Maintenance/Snapshot", reason: "back up the masters' data directories instead")
    }

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws -> Etcdserverpb_MoveLeaderResponse {
        throw core.unimplemented("etcdserverpb.Maintenance/MoveLeader", reason: "leadership is managed by the orchestrator's masters")
    }
}
