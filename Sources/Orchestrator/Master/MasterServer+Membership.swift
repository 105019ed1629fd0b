import ClusterModel
import ClusterProto
import Foundation
import Raft

/// Membership of the masters at runtime, the one implementation behind the REST API, the etcd
/// API's Member* calls and `Masters/Membership` between masters. Changes are made by the leader,
/// one at a time (thesis §4.1; the Raft core refuses a second while one is unapplied); a follower
/// passes them to the leader, as it does writes.
extension MasterServer {
    /// How far (in entries) a learner may trail the leader's log and still be promoted: a voter
    /// that far behind catches up within a round trip, so it cannot stall commitment (§4.2.1).
    static let promotableLag: UInt64 = 128

    /// The members as this master knows them, with API addresses the masters registered.
    public func members() -> [MasterMember] {
        guard case .raft(let raft) = parts else { return [] }
        let directory = masterDirectory.entries()
        return raft.registry.members.map { member in
            var m = member
            if m.name.isEmpty, let named = directory.first(where: { $0.value.id == m.id }) { m.name = named.key }
            if let entry = directory[m.name] {
                if m.apiAddress.isEmpty { m.apiAddress = entry.api }
                if m.etcdAddress.isEmpty { m.etcdAddress = entry.etcd }
            }
            return m
        }
    }

    /// Serves one membership request: LIST here; the changes on the leader.
    func membership(_ request: Orchestrator_V1_MembershipRequest) async throws -> Orchestrator_V1_MembershipResponse {
        guard case .raft(let raft) = parts else {
            throw MembershipError(.invalid, "not_supported", "membership is managed by etcd with --store etcd")
        }
        if request.action == .list { return await listing(raft) }
        let status = await raft.node.status()
        if status.role != .leader {
            guard !request.forwarded else {
                throw MembershipError(.unavailable, "no_leader", "the master asked is no longer the leader; try again")
            }
            return try await forwardToLeader(request, raft)
        }
        do {
            switch request.action {
            case .add: return try await add(request, raft)
            case .promote: return try await promote(request.memberID, raft, status: status)
            case .remove: return try await remove(request.memberID, raft)
            default: throw MembershipError(.invalid, "invalid_field", "action: unknown")
            }
        } catch {
            throw MembershipError(error)
        }
    }

    private func listing(_ raft: RaftParts) async -> Orchestrator_V1_MembershipResponse {
        let status = await raft.node.status()
        let members = members()
        return .with {
            $0.clusterID = raft.registry.clusterID
            $0.leaderID = status.leader
            $0.responderID = raft.registry.selfID
            $0.appliedIndex = status.appliedIndex
            $0.members = members.map(Self.proto)
            $0.started = masterDirectory.entries().keys.sorted()
        }
    }

    static func proto(_ m: MasterMember) -> Orchestrator_V1_Member {
        .with {
            $0.id = m.id
            $0.name = m.name
            $0.rpcAddress = m.rpcAddress
            $0.apiAddress = m.apiAddress
            $0.etcdAddress = m.etcdAddress
            $0.learner = m.isLearner
        }
    }

    private func forwardToLeader(_ request: Orchestrator_V1_MembershipRequest, _ raft: RaftParts) async throws -> Orchestrator_V1_MembershipResponse {
        // During an election there is no leader for a moment: wait for one, a few seconds at most,
        // as writes do.
        let deadline = ContinuousClock.now + .seconds(5)
        var leader = await raft.node.status().leader
        while leader == noNode {
            guard ContinuousClock.now < deadline else { throw MembershipError(.unavailable, "no_leader", "no leader is known; try again") }
            try await Task.sleep(for: .milliseconds(50))
            leader = await raft.node.status().leader
        }
        guard let address = raft.registry.rpcAddress(of: leader) else {
            throw MembershipError(.unavailable, "no_leader", "the leader's address is not known yet; try again")
        }
        var forwarded = request
        forwarded.forwarded = true
        return try await MembershipCall.send(forwarded, to: address, clients: masterClients, timeout: .seconds(30))
    }

    private func add(_ request: Orchestrator_V1_MembershipRequest, _ raft: RaftParts) async throws -> Orchestrator_V1_MembershipResponse {
        guard let rpc = HostPort(parsing: request.rpcAddress) else {
            throw MembershipError(.invalid, "invalid_field", "rpc_address: \"\(request.rpcAddress)\" is not HOST:PORT")
        }
        for (field, value) in [("api_address", request.apiAddress), ("etcd_address", request.etcdAddress)]
        where !value.isEmpty && HostPort(parsing: value) == nil {
            throw MembershipError(.invalid, "invalid_field", "\(field): \"\(value)\" is not HOST:PORT")
        }
        let name = request.name
        if !name.isEmpty, !Self.isValidName(name) {
            throw MembershipError(.invalid, "invalid_field", "name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
        let current = members()
        if request.join, let existing = current.first(where: { $0.rpcAddress == rpc.description && (name.isEmpty || $0.name.isEmpty || $0.name == name) }) {
            // Added before (by an operator, or by an earlier attempt of this join): answer as is.
            return await answer(memberID: existing.id, raft)
        }
        if let taken = current.first(where: { $0.rpcAddress == rpc.description || (!name.isEmpty && $0.name == name) }) {
            throw MembershipError(.conflict, "member_exists", "member \(taken.id) (\(taken.name)) already has this name or rpc address; remove it first")
        }
        // Fresh random ids, as etcd's: a removed member's id is never handed out again, so a
        // removed server that comes back cannot pass for the new one.
        var id: NodeID = 0
        while id == 0 || current.contains(where: { $0.id == id }) { id = UInt64.random(in: 1..<(1 << 53)) }
        let context = MemberContext(name: name, rpc: rpc.description, api: request.apiAddress, etcd: request.etcdAddress,
                                    cluster: raft.registry.clusterID)
        try await raft.node.changeMembership(ConfChange(kind: .addLearner, node: id, context: context.encoded))
        logger.notice("added a learner", metadata: ["member-id": "\(id)", "name": "\(name)", "rpc": "\(rpc)"])
        return await answer(memberID: id, raft)
    }

    private func promote(_ id: UInt64, _ raft: RaftParts, status: RaftStatus) async throws -> Orchestrator_V1_MembershipResponse {
        guard let member = members().first(where: { $0.id == id }) else {
            throw MembershipError(.notFound, "not_found", "no member with id \(id)")
        }
        guard member.isLearner else { throw MembershipError(.invalid, "not_a_learner", "member \(id) is already a voter") }
        // Thesis §4.2.1: only a learner that has caught up becomes a voter, or the new quorum
        // would wait for it.
        // A learner that has acknowledged nothing yet (match 0) has not started, however short
        // the log.
        let match = status.match[id] ?? 0
        guard match > 0, status.lastIndex <= match + Self.promotableLag else {
            throw MembershipError(.conflict, "learner_not_caught_up",
                                  "member \(id) has \(match) of the leader's \(status.lastIndex) entries; promote it once it has caught up")
        }
        try await raft.node.changeMembership(ConfChange(kind: .promote, node: id))
        logger.notice("promoted a learner", metadata: ["member-id": "\(id)", "name": "\(member.name)"])
        return await answer(memberID: id, raft)
    }

    private func remove(_ id: UInt64, _ raft: RaftParts) async throws -> Orchestrator_V1_MembershipResponse {
        guard let member = members().first(where: { $0.id == id }) else {
            throw MembershipError(.notFound, "not_found", "no member with id \(id)")
        }
        // Removing the leader itself is allowed: it steps down once the change commits (§4.2.2).
        try await raft.node.changeMembership(ConfChange(kind: .removeNode, node: id))
        logger.notice("removed a member", metadata: ["member-id": "\(id)", "name": "\(member.name)"])
        return await answer(memberID: id, raft)
    }

    private func answer(memberID: UInt64, _ raft: RaftParts) async -> Orchestrator_V1_MembershipResponse {
        var response = await listing(raft)
        response.memberID = memberID
        return response
    }

    static func isValidName(_ name: String) -> Bool {
        let alphanumerics = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        guard (1...63).contains(name.count), let first = name.first, alphanumerics.contains(first) else { return false }
        return name.allSatisfy { alphanumerics.contains($0) || "._-".contains($0) }
    }

    /// A removed follower often never applies its own removal: once the change commits, the leader
    /// stops sending to it, commit index included (etcd's peers tell a removed member so on its
    /// next message; Raft has no such message). So a member that has heard no leader for a while
    /// asks the others: when the leader answers with a membership, as of an applied index at
    /// least this master's, that no longer lists it, it was removed (ids are never reused) and
    /// stops, as one that applied its removal does.
    func watchForRemoval(_ raft: RaftParts) async {
        let selfID = raft.registry.selfID
        var leaderless = 0
        while !Task.isCancelled, !raft.registry.isRemoved {
            try? await Task.sleep(for: .seconds(1))
            let status = await raft.node.status()
            guard status.confState.members.contains(selfID), status.leader == noNode else {
                leaderless = 0
                continue
            }
            leaderless += 1
            guard leaderless >= 3 else { continue }
            for member in raft.registry.members where member.id != selfID {
                guard let address = HostPort(parsing: member.rpcAddress),
                      let answer = try? await MembershipCall.send(.with { $0.action = .list }, to: address, clients: masterClients,
                                                                  timeout: .seconds(1), waitForReady: false) else { continue }
                if answer.leaderID == answer.responderID, answer.appliedIndex >= status.appliedIndex,
                   answer.clusterID == raft.registry.clusterID, !answer.members.contains(where: { $0.id == selfID }) {
                    logger.warning("the leader no longer lists this master: it was removed from the cluster",
                                   metadata: ["leader": "\(answer.responderID)"])
                    raft.registry.markRemoved()
                    return
                }
            }
        }
    }

    /// A master that joined as a learner asks to be promoted once the leader agrees it has caught
    /// up (thesis §4.2.1; etcd's learners are promoted the same way, on request).
    func promoteWhenCaughtUp(_ raft: RaftParts) async {
        let selfID = raft.registry.selfID
        while !Task.isCancelled {
            let view = await raft.node.membership()
            if view.removed || view.confState.voters.contains(selfID) { return }
            if view.confState.learners.contains(selfID) {
                do {
                    _ = try await membership(.with {
                        $0.action = .promote
                        $0.memberID = selfID
                    })
                    logger.notice("promoted to voter")
                    return
                } catch {
                    logger.debug("not promoted yet", metadata: ["reason": "\(error)"])
                }
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}

extension MasterAPIBridge: MembershipSource {
    func listMembers() async throws -> (clusterID: String, members: [MasterMember]) {
        (server.raftParts?.registry.clusterID ?? "", server.members())
    }

    func addMember(name: String, rpcAddress: String, apiAddress: String, etcdAddress: String) async throws -> MasterMember {
        let answer = try await server.membership(.with {
            $0.action = .add
            $0.name = name
            $0.rpcAddress = rpcAddress
            $0.apiAddress = apiAddress
            $0.etcdAddress = etcdAddress
        })
        return try Self.member(answer.memberID, in: answer)
    }

    func promoteMember(id: UInt64) async throws -> MasterMember {
        try Self.member(id, in: try await server.membership(.with {
            $0.action = .promote
            $0.memberID = id
        }))
    }

    func removeMember(id: UInt64) async throws {
        _ = try await server.membership(.with {
            $0.action = .remove
            $0.memberID = id
        })
    }

    func backupFile() async throws -> [UInt8] {
        do {
            return try await server.backup().encoded
        } catch let error as BackupUnavailable {
            throw APIError(status: 501, code: "not_supported", message: error.description)
        }
    }

    static func member(_ id: UInt64, in answer: Orchestrator_V1_MembershipResponse) throws -> MasterMember {
        guard let m = answer.members.first(where: { $0.id == id }) else {
            throw MembershipError(.unavailable, "unavailable", "member \(id) changed but is not listed yet; list the members")
        }
        return MasterMember(id: m.id, name: m.name, rpcAddress: m.rpcAddress, apiAddress: m.apiAddress,
                             etcdAddress: m.etcdAddress, isLearner: m.learner)
    }
}
