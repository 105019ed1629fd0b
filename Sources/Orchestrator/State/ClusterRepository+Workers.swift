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
    public func join(id: String, address: String, capacity: Resources, labels: [String: String], now: Int64) async throws -> NodeRecord {
        for _ in 0..<10 {
            if var existing = try? await node(id, consistency: .linearizable) {
                existing.info.capacity = capacity
                existing.info.labels = labels
                existing.address = address
                existing.lastHeartbeat = now
                if existing.info.state == .down || existing.info.state == .notReady { existing.info.state = .ready }
                do {
                    return try await save(existing, expectRevision: existing.revision)
                } catch RepositoryError.conflict {
                    continue
                }
            }
            let fresh = NodeRecord(info: NodeInfo(id: id, labels: labels, capacity: capacity), address: address, lastHeartbeat: now)
            do {
                return try await save(fresh, expectRevision: 0)
            } catch RepositoryError.conflict {
                continue
            }
        }
        throw RepositoryError.conflict("node \(id) kept changing while joining")
    }
}
