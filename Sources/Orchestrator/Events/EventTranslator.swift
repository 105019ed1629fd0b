import Foundation
import Store

/// Turns store changes into typed cluster events, by comparing a record's old and new versions
/// (the watch's `prevKV`). Pure: no store, no clock; events need no records of their own, so the
/// stream's history is the store's history and resumes wherever the store can replay.
public enum EventTranslator {
    /// The event one key-value change stands for, or nil when it is not one a user watches for
    /// (a heartbeat, an allocation change, a retry counter, a key outside the orchestrator's).
    /// Records that do not decode are skipped rather than failing the stream.
    public static func translate(_ change: WatchEvent) -> ClusterEvent? {
        let key = change.kv.key
        let revision = change.kv.modRevision
        if key.starts(with: ClusterRepository.taskPrefix) {
            return task(change, revision: revision, id: String(decoding: key.dropFirst(ClusterRepository.taskPrefix.count), as: UTF8.self))
        }
        if key.starts(with: ClusterRepository.nodePrefix) {
            return node(change, revision: revision, id: String(decoding: key.dropFirst(ClusterRepository.nodePrefix.count), as: UTF8.self))
        }
        if key == ClusterRepository.leaderKey {
            return leader(change, revision: revision)
        }
        return nil
    }

    /// All events of a watch response, in order.
    public static func translate(_ changes: [WatchEvent]) -> [ClusterEvent] {
        changes.compactMap { translate($0) }
    }

    static func task(_ change: WatchEvent, revision: Int64, id: String) -> ClusterEvent? {
        let old = change.prevKV.flatMap { try? ClusterRepository.decode(TaskRecord.self, $0) }
        guard change.kind == .put else {
            return ClusterEvent(type: .taskDeleted, revision: revision, subject: .removed(id: id), previousState: old?.state.rawValue)
        }
        guard let new = try? ClusterRepository.decode(TaskRecord.self, change.kv) else { return nil }
        guard let old else { return ClusterEvent(type: .taskCreated, revision: revision, subject: .task(new)) }
        let type: ClusterEventType
        if new.state == old.state {
            // Placed again without passing through pending (a new epoch): still a new assignment.
            guard new.state == .assigned, new.epoch != old.epoch else { return nil }
            type = .taskAssigned
        } else {
            switch new.state {
            case .pending: type = .taskRescheduled
            case .assigned: type = .taskAssigned
            case .running: type = .taskRunning
            case .completed: type = .taskCompleted
            case .failed: type = .taskFailed
            case .cancelled: type = .taskCancelled
            case .lost: type = .taskLost
            }
        }
        return ClusterEvent(type: type, revision: revision, subject: .task(new), previousState: old.state.rawValue)
    }

    static func node(_ change: WatchEvent, revision: Int64, id: String) -> ClusterEvent? {
        let old = change.prevKV.flatMap { try? ClusterRepository.decode(NodeRecord.self, $0) }
        guard change.kind == .put else {
            return ClusterEvent(type: .nodeRemoved, revision: revision, subject: .removed(id: id), previousState: old?.info.state.rawValue)
        }
        guard let new = try? ClusterRepository.decode(NodeRecord.self, change.kv) else { return nil }
        guard let old else { return ClusterEvent(type: .nodeJoined, revision: revision, subject: .node(new)) }
        let type: ClusterEventType
        if new.info.state != old.info.state {
            // A state change wins over a schedulable change in the same write (drain implies cordon).
            switch new.info.state {
            case .ready: type = .nodeReady
            case .notReady: type = .nodeNotReady
            case .down: type = .nodeDown
            case .draining: type = .nodeDrained
            }
        } else if new.info.schedulable != old.info.schedulable {
            type = new.info.schedulable ? .nodeUncordoned : .nodeCordoned
        } else {
            return nil
        }
        return ClusterEvent(type: type, revision: revision, subject: .node(new), previousState: old.info.state.rawValue)
    }

    static func leader(_ change: WatchEvent, revision: Int64) -> ClusterEvent? {
        guard change.kind == .put, let new = try? JSONRecord.decode(LeaderRecord.self, change.kv.value) else { return nil }
        // A leader rewriting its own record (same id and term) is not a new election.
        if let old = change.prevKV.flatMap({ try? JSONRecord.decode(LeaderRecord.self, $0.value) }), old == new { return nil }
        return ClusterEvent(type: .leaderElected, revision: revision, subject: .leader(new))
    }
}

/// Decoding of small JSON records that carry no revision of their own (the leader record).
enum JSONRecord {
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
