import ClusterModel
import Foundation
import Store

/// What workers and the leader write besides tasks and nodes: heartbeats and the leader record.
///
/// Heartbeats live under their own keys rather than in the node record: a heartbeat every second
/// per node would otherwise change the node's mod revision under the scheduler's compare-and-swap
/// and make every placement on a live node conflict.
extension ClusterRepository {
    public static let heartbeatPrefix = Array("/orchestrator/heartbeats/".utf8)

    static func heartbeatKey(_ id: String) -> [UInt8] { heartbeatPrefix + Array(id.utf8) }

    /// Records that `nodeID` was heard from at `now` (milliseconds of the receiving master).
    public func recordHeartbeat(nodeID: String, now: Int64) async throws {
        try await store.put(Self.heartbeatKey(nodeID), Array(String(now).utf8))
    }

    /// The last heartbeat of every node that has sent one, in milliseconds.
    public func heartbeats(consistency: ReadConsistency = .serializable) async throws -> [String: Int64] {
        let r = try await store.list(prefix: Self.heartbeatPrefix, consistency: consistency)
        var result: [String: Int64] = [:]
        for kv in r.kvs {
            let id = String(decoding: kv.key.dropFirst(Self.heartbeatPrefix.count), as: UTF8.self)
            if let ms = Int64(String(decoding: kv.value, as: UTF8.self)) { result[id] = ms }
        }
        return result
    }

    /// The last heartbeat of one node, in milliseconds (nil: none recorded).
    public func heartbeat(of nodeID: String, consistency: ReadConsistency = .serializable) async throws -> Int64? {
        guard let kv = try await store.get(Self.heartbeatKey(nodeID), consistency: consistency) else { return nil }
        return Int64(String(decoding: kv.value, as: UTF8.self))
    }

    /// Announces a new leader at `leaderKey` (an event for `GET /api/v1/events`).
    public func announceLeader(_ record: LeaderRecord) async throws {
        try await store.put(Self.leaderKey, Self.encode(record))
    }

    public func leader(consistency: ReadConsistency = .serializable) async throws -> LeaderRecord? {
        guard let kv = try await store.get(Self.leaderKey, consistency: consistency) else { return nil }
        return try? JSONDecoder().decode(LeaderRecord.self, from: Data(kv.value))
    }

    /// Registers a worker, or updates what it offers when it joins again with its saved id; the
    /// node's allocation, state and schedulability are kept across re-joins (only a drained or
    /// down node comes back ready: it is a new start).
    ///
    /// Who may join as `id` is decided against the record as read inside the compare-and-swap
    /// loop (`NodeAdmission`), so two joins racing for one id cannot both be admitted on a stale
    /// read. Returns the saved record and, when one was issued, the node's new credential.
    public func join(id: String, address: String, capacity: Resources, labels: [String: String], now: Int64,
                     presentedCredential: String = "", tokenAccepted: Bool) async throws -> (NodeRecord, NodeCredential?) {
        for _ in 0..<10 {
            let existing = try await readNode(id, consistency: .linearizable).node
            let decision = NodeAdmission.decide(id: id, storedDigest: existing.map { $0.credentialDigest },
                                                presented: presentedCredential, tokenAccepted: tokenAccepted)
            let issued: NodeCredential?
            switch decision {
            case .refuse(let reason): throw RepositoryError.permissionDenied(reason)
            case .admitKeeping: issued = nil
            case .admitIssuing: issued = NodeCredential.issue()
            }
            var record = existing ?? NodeRecord(info: NodeInfo(id: id, labels: labels, capacity: capacity), address: address, lastHeartbeat: now)
            record.info.capacity = capacity
            record.info.labels = labels
            record.address = address
            record.lastHeartbeat = now
            if record.info.state == .down || record.info.state == .notReady { record.info.state = .ready }
            if let issued { record.credentialDigest = issued.digest }
            do {
                return (try await save(record, expectRevision: existing?.revision ?? 0), issued)
            } catch RepositoryError.conflict {
                continue
            }
        }
        throw RepositoryError.conflict("node \(id) kept changing while joining")
    }

    /// Whether `credential` is the one issued to `nodeID` (false for an unknown node, or one
    /// registered before credentials existed: it must join again to get one).
    public func verifyCredential(nodeID: String, credential: String) async throws -> Bool {
        guard !credential.isEmpty, let node = try await readNode(nodeID).node, let digest = node.credentialDigest else { return false }
        return NodeCredential.matches(presented: credential, stored: digest)
    }
}
