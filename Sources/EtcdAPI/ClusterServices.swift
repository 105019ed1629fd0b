import Foundation
import EtcdProto
import GRPCCore
import Store

/// etcd's `Cluster` service: members and their changes come from `EtcdClusterInfo` (on a master:
/// Raft's membership, changed as the REST API changes it), so `etcdctl member list|add|remove|promote`
/// work. `MemberUpdate` (changing a member's peer URLs) is refused: a master that moves is removed
/// and added again.
struct ClusterService: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let core: ServerCore

    static func proto(_ member: EtcdMember) -> Etcdserverpb_Member {
        var m = Etcdserverpb_Member()
        m.id = member.id
        m.name = member.name
        m.peerUrls = member.peerURLs
        m.clientUrls = member.clientURLs
        m.isLearner = member.isLearner
        return m
    }

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws -> Etcdserverpb_MemberListResponse {
        try await etcdCall {
            var response = Etcdserverpb_MemberListResponse()
            response.members = try await core.info.members().map(Self.proto)
            response.header = try await core.currentHeader()
            return response
        }
    }

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws -> Etcdserverpb_MemberAddResponse {
        try await membershipCall {
            let (member, members) = try await core.info.addMember(peerURLs: request.peerUrls, isLearner: request.isLearner)
            var response = Etcdserverpb_MemberAddResponse()
            response.member = Self.proto(member)
            response.members = members.map(Self.proto)
            response.header = try await core.currentHeader()
            return response
        }
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws -> Etcdserverpb_MemberRemoveResponse {
        try await membershipCall {
            var response = Etcdserverpb_MemberRemoveResponse()
            response.members = try await core.info.removeMember(id: request.id).map(Self.proto)
            response.header = try await core.currentHeader()
            return response
        }
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws -> Etcdserverpb_MemberUpdateResponse {
        throw core.unimplemented("etcdserverpb.Cluster/MemberUpdate",
                                 reason: "a master's addresses are fixed: remove it and add it again at the new address")
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws -> Etcdserverpb_MemberPromoteResponse {
        try await membershipCall {
            var response = Etcdserverpb_MemberPromoteResponse()
            response.members = try await core.info.promoteMember(id: request.id).map(Self.proto)
            response.header = try await core.currentHeader()
            return response
        }
    }

    /// Refusals keep their own code (etcdctl prints the message); the rest as every etcd call.
    private func membershipCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as EtcdMembershipError {
            throw RPCError(code: error.code, message: "etcdserver: \(error.message)")
        } catch EtcdAPIError.unimplemented(let method, let reason) {
            // A server whose membership is fixed: logged by name, as every refused method is.
            throw core.unimplemented(method, reason: reason)
        } catch {
            throw EtcdAPIError(error).rpcError
        }
    }
}

/// etcd's `Maintenance` service: what `etcdctl endpoint status`, `endpoint health`, `alarm list`,
/// `defrag`, `snapshot save` and `check perf` call. Alarms are the store's (`QuotaStore`: NOSPACE
/// past `--quota-backend-bytes`); defragmentation has nothing to do (the store is in memory and
/// SQLite reuses freed pages), so after a compaction the alarm can be disarmed at once.
struct MaintenanceService: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let core: ServerCore

    /// GET lists the alarms (those of one member, or of one kind, when the request names them);
    /// ACTIVATE and DEACTIVATE change one through the log and answer what changed, as etcd does
    /// (`etcdctl alarm disarm` lists, then deactivates each).
    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        if request.action != .get, AlarmKind(rawValue: UInt8(clamping: request.alarm.rawValue)) == nil {
            throw RPCError(code: .invalidArgument, message: "etcdserver: an alarm to raise or clear must name its type (NOSPACE or CORRUPT)")
        }
        return try await etcdCall {
            var response = Etcdserverpb_AlarmResponse()
            if let store = core.store as? any QuotaStore {
                let kind = AlarmKind(rawValue: UInt8(clamping: request.alarm.rawValue))
                let alarms: [StoreAlarm]
                switch request.action {
                case .get:
                    alarms = store.alarms().filter {
                        (request.memberID == 0 || $0.memberID == request.memberID) && (kind == nil || $0.kind == kind)
                    }
                case .activate, .deactivate:
                    guard let kind else { throw EtcdAPIError.internalError(reason: "etcdserver: no alarm type") }
                    alarms = try await store.changeAlarm(request.action == .activate ? .activate : .deactivate,
                                                         StoreAlarm(memberID: request.memberID, kind: kind))
                case .UNRECOGNIZED(let value):
                    throw EtcdAPIError.internalError(reason: "etcdserver: unknown alarm action \(value)")
                }
                response.alarms = alarms.map { alarm in
                    var member = Etcdserverpb_AlarmMember()
                    member.memberID = alarm.memberID
                    member.alarm = Etcdserverpb_AlarmType(rawValue: Int(alarm.kind.rawValue)) ?? .none
                    return member
                }
            }
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

    /// Streams the member's backup (`EtcdClusterInfo.backup`) in chunks of `snapshotChunkBytes`,
    /// each saying how many bytes remain, as etcd does; `etcdctl snapshot save FILE` writes them
    /// out in order.
    func snapshot(request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>,
                  context: ServerContext) async throws {
        let file: [UInt8]
        do {
            file = try await core.info.backup()
        } catch EtcdAPIError.unimplemented(let method, let reason) {
            throw core.unimplemented(method, reason: reason)
        } catch {
            throw EtcdAPIError(error).rpcError
        }
        let header = try await core.currentHeader()
        var offset = 0
        repeat {
            let end = min(file.count, offset + Self.snapshotChunkBytes)
            var chunk = Etcdserverpb_SnapshotResponse()
            chunk.header = header
            chunk.blob = Data(file[offset..<end])
            chunk.remainingBytes = UInt64(file.count - end)
            try await response.write(chunk)
            offset = end
        } while offset < file.count
        core.logger.notice("backup streamed", metadata: ["bytes": "\(file.count)"])
    }

    /// etcd sends 32 KiB; fewer, larger messages cost less here and stay far below every client's
    /// 4 MiB receive limit.
    static let snapshotChunkBytes = 256 << 10

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws -> Etcdserverpb_MoveLeaderResponse {
        throw core.unimplemented("etcdserverpb.Maintenance/MoveLeader", reason: "leadership is managed by the orchestrator's masters")
    }
}
