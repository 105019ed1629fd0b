import Store
import Synchronization

/// An in-memory copy of the task and node records, kept current by a watch: the informer that
/// Kubernetes' scheduler keeps, for the same reason. Without it every scheduling round listed and
/// decoded every task in the store, so at 10,000 tasks each submission cost the leader a full
/// decode and placements crawled at a few hundred per second.
///
/// The copy may lag the store by the watch's delay, never more: it is filled from one list at a
/// revision and then follows the watch from the next revision, and after a failed watch (the
/// history was compacted, the store lost its leader) it lists again. Lagging is safe because every
/// write the leader makes is a compare-and-swap on the revisions read here: a stale record makes a
/// write fail, never a wrong write succeed. The leader's own successful writes are recorded at
/// once (`record`), so its next round does not trip over its own placements.
///
/// Every master runs one (``MasterServer``): besides the leader's rounds it serves `/metrics` from
/// counts kept up to date here (``counts()``) and every worker's assignment stream from the tasks
/// indexed by node (``assignmentUpdates(of:atLeast:timeout:)``), so neither reads every task per call. A
/// `LeaderLoop` built without one runs its own, while leading only.
public final class ClusterCache: Sendable {
    struct State {
        var tasks: [String: TaskRecord] = [:]
        /// Pending tasks a round should consider: every pending task but the parked ones.
        var pending: Set<String> = []
        /// Pending tasks a round found fitting on no node, while the nodes stay as they were then
        /// (see `park(_:generation:)`).
        var parked: Set<String> = []
        /// Counts changes to the nodes that can change where a task fits (a node added, removed,
        /// or changed in state, schedulability, labels, capacity or allocation).
        var nodeGeneration: UInt64 = 0
        /// `nodes` in key order, kept until a node record changes (every round asks for it).
        var sortedNodes: [NodeRecord]?
        /// Counts every change to a node record (heartbeat times included), for `sortedNodes`.
        var nodeRecordChanges: UInt64 = 0
        var nodes: [String: NodeRecord] = [:]
        /// Counts and tasks by node, following every change to `tasks` and `nodes`.
        var index = ClusterIndex()
        /// Nodes whose tasks changed since the assignment streams were last told.
        var touched: Set<String> = []
        /// Open assignment streams, by node (see ClusterCache+Assignments.swift).
        var subscribers: [String: [UInt64: AsyncStream<NodeAssignments>.Continuation]] = [:]
        var nextSubscriber: UInt64 = 0
        /// The store revision everything here reflects.
        var revision: Int64 = 0
        var synced = false
    }

    let state = Mutex(State())

    public init() {}

    /// Whether the copy has been filled (a first list succeeded) and is following the watch.
    public var isSynced: Bool { state.withLock { $0.synced } }

    /// The store revision the copy reflects.
    public var revision: Int64 { state.withLock { $0.revision } }

    /// Pending tasks whose backoff has ended, oldest first (ties by id, compared as bytes).
    ///
    /// Every round of the leader asks for all of them, so this is on the scheduler's hot path
    /// while a backlog waits: the order is decided on small keys and each record is copied once
    /// (filtering, then sorting the records, copied them three times and compared ids as Unicode
    /// strings: 14% of the cluster's CPU while 20,000 tasks were submitted onto cordoned nodes).
    public func pendingTasks(readyAt now: Int64) -> [TaskRecord] {
        pending(readyAt: now, includingParked: true).tasks
    }

    /// What a scheduling round considers: the pending tasks of `pendingTasks(readyAt:)` except
    /// those parked as fitting nowhere since the nodes last changed, and the node generation they
    /// were read at (to park, with `park(_:generation:)`, the ones that still fit nowhere).
    ///
    /// Kubernetes' scheduler keeps unschedulable pods aside the same way until a cluster event
    /// may have made room. Without it, every submission onto a full cluster started a round over
    /// the whole backlog: 17% of the leader's CPU while 14,000 tasks waited for nodes.
    public func schedulingCandidates(readyAt now: Int64) -> (tasks: [TaskRecord], nodeGeneration: UInt64, parked: Int) {
        pending(readyAt: now, includingParked: false)
    }

    /// Sets aside the pending tasks `ids`, found fitting on no node by a round that read the nodes
    /// at `generation`, until the nodes change. Ignored if they changed since: what was read then
    /// says nothing about the nodes now.
    public func park(_ ids: [String], generation: UInt64) {
        guard !ids.isEmpty else { return }
        state.withLock { s in
            guard s.nodeGeneration == generation else { return }
            for id in ids where s.pending.remove(id) != nil { s.parked.insert(id) }
        }
    }

    /// Pending tasks whose backoff has ended, oldest first, the node generation at the read, and
    /// how many parked tasks were left out.
    private func pending(readyAt now: Int64, includingParked: Bool) -> (tasks: [TaskRecord], nodeGeneration: UInt64, parked: Int) {
        var (keys, generation, parked) = state.withLock { s in
            var keys: [(createdAt: Int64, id: String)] = []
            keys.reserveCapacity(s.pending.count + (includingParked ? s.parked.count : 0))
            for id in includingParked ? s.pending.union(s.parked) : s.pending {
                guard let task = s.tasks[id], (task.notBefore ?? 0) <= now else { continue }
                keys.append((task.createdAt, id))
            }
            return (keys, s.nodeGeneration, includingParked ? 0 : s.parked.count)
        }
        keys.sort { a, b in
            a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.id.utf8.lexicographicallyPrecedes(b.id.utf8)
        }
        let tasks = state.withLock { s in
            var tasks: [TaskRecord] = []
            tasks.reserveCapacity(keys.count)
            for key in keys {
                // Changed since the keys were read: still pending counts, in its old place.
                if let task = s.tasks[key.id], task.state == .pending { tasks.append(task) }
            }
            return tasks
        }
        return (tasks, generation, parked)
    }

    /// Every task (in no particular order).
    public func tasks() -> [TaskRecord] { state.withLock { Array($0.tasks.values) } }

    /// Every node, in key order (as a list of the store returns them).
    public func nodes() -> [NodeRecord] {
        if let sorted = state.withLock({ $0.sortedNodes }) { return sorted }
        let (nodes, generation) = state.withLock { (Array($0.nodes.values), $0.nodeRecordChanges) }
        let sorted = nodes.sorted { $0.info.id.utf8.lexicographicallyPrecedes($1.info.id.utf8) }
        // Kept only if no node changed while sorting (outside the lock: 5,000 records).
        state.withLock { if $0.nodeRecordChanges == generation { $0.sortedNodes = sorted } }
        return sorted
    }

    public func node(_ id: String) -> NodeRecord? { state.withLock { $0.nodes[id] } }

    /// Records a task as written by this process (its `revision` is the write's). Older news
    /// than what is held is ignored, so the watch's later copy of the same write changes nothing.
    public func record(_ task: TaskRecord) {
        state.withLock { Self.put(task, into: &$0) }
    }

    public func record(_ node: NodeRecord) {
        state.withLock { Self.put(node, into: &$0) }
    }

    /// Fills the copy and follows the store until cancelled. `onChange` runs after every batch
    /// of task or node changes has been applied (so a round it triggers sees them).
    public func run(repository: ClusterRepository, onChange: @escaping @Sendable () -> Void) async {
        let root = ClusterRepository.rootPrefix
        while !Task.isCancelled {
            do {
                let revision = try await fill(from: repository)
                onChange()
                let changes = repository.store.watch(key: root, rangeEnd: KeyRange.prefixEnd(root),
                                                     fromRevision: revision + 1, prevKV: false)
                for try await change in changes {
                    let relevant = try state.withLock { s -> Bool in
                        var relevant = false
                        for event in change.events {
                            switch event.kind {
                            case .put: relevant = try Self.apply(event.kv, into: &s) || relevant
                            case .delete: relevant = Self.remove(event.kv, from: &s) || relevant
                            }
                        }
                        s.revision = max(s.revision, change.revision)
                        // Told under the lock, so streams see the changes in the order applied.
                        Self.notifyTouched(&s)
                        return relevant
                    }
                    if relevant { onChange() }
                }
            } catch {
                // Unavailable (no leader yet), compacted past our revision, or a record that does
                // not decode: list again shortly.
            }
            state.withLock { $0.synced = false }
            try? await Task.sleep(for: .milliseconds(200))
        }
        // Stopped: the assignment streams end, and their workers go to another master.
        state.withLock { s in
            for continuation in s.subscribers.values.flatMap(\.values) { continuation.finish() }
            s.subscribers = [:]
        }
    }

    /// Replaces the copy with one linearizable list of the store; returns the list's revision.
    @discardableResult
    func fill(from repository: ClusterRepository) async throws -> Int64 {
        let listed = try await repository.store.list(prefix: ClusterRepository.rootPrefix, consistency: .linearizable)
        try state.withLock { s in
            var fresh = State()
            for kv in listed.kvs { _ = try Self.apply(kv, into: &fresh) }
            fresh.revision = listed.revision
            fresh.synced = true
            // The streams outlive a relist: each is sent its node's tasks as listed now, which
            // covers whatever happened while the watch was broken.
            fresh.subscribers = s.subscribers
            fresh.nextSubscriber = s.nextSubscriber
            fresh.touched = Set(s.subscribers.keys)
            s = fresh
            Self.notifyTouched(&s)
        }
        return listed.revision
    }

    // MARK: - Applying changes

    /// Applies one stored key; returns whether it was a task or node record.
    private static func apply(_ kv: KeyValue, into s: inout State) throws -> Bool {
        if kv.key.starts(with: ClusterRepository.taskPrefix) {
            put(try ClusterRepository.decode(TaskRecord.self, kv), into: &s)
            return true
        }
        if kv.key.starts(with: ClusterRepository.nodePrefix) {
            put(try ClusterRepository.decode(NodeRecord.self, kv), into: &s)
            return true
        }
        return false
    }

    private static func remove(_ kv: KeyValue, from s: inout State) -> Bool {
        if kv.key.starts(with: ClusterRepository.taskPrefix) {
            let id = String(decoding: kv.key.dropFirst(ClusterRepository.taskPrefix.count), as: UTF8.self)
            if let held = s.tasks.removeValue(forKey: id) {
                s.index.replace(task: held, with: nil)
                if let node = held.node { s.touched.insert(node) }
            }
            s.pending.remove(id)
            s.parked.remove(id)
            return true
        }
        if kv.key.starts(with: ClusterRepository.nodePrefix) {
            let id = String(decoding: kv.key.dropFirst(ClusterRepository.nodePrefix.count), as: UTF8.self)
            if let held = s.nodes.removeValue(forKey: id) {
                s.index.replace(node: held, with: nil)
                s.nodeRecordChanges &+= 1
                s.sortedNodes = nil
                nodesChanged(&s)
            }
            return true
        }
        return false
    }

    private static func put(_ task: TaskRecord, into s: inout State) {
        let held = s.tasks[task.id]
        if let held, held.revision >= task.revision { return }
        s.tasks[task.id] = task
        s.index.replace(task: held, with: task)
        // Both nodes' streams hear of it: the one it left and the one it is on. A change recorded
        // by the leader (`record`) is told with the next batch from the watch, which carries it.
        if let node = held?.node { s.touched.insert(node) }
        if let node = task.node { s.touched.insert(node) }
        if task.state != .pending {
            s.pending.remove(task.id)
            s.parked.remove(task.id)
        } else if !s.parked.contains(task.id) {
            // A parked task stays parked through its own updates (the reason a round writes):
            // where it fits depends on its spec, which does not change, and on the nodes.
            s.pending.insert(task.id)
        }
    }

    private static func put(_ node: NodeRecord, into s: inout State) {
        let held = s.nodes[node.info.id]
        if let held, held.revision >= node.revision { return }
        s.nodes[node.info.id] = node
        s.index.replace(node: held, with: node)
        s.nodeRecordChanges &+= 1
        s.sortedNodes = nil
        if held?.info != node.info { nodesChanged(&s) }
    }

    /// Room may have appeared or gone: every parked task is a candidate again.
    private static func nodesChanged(_ s: inout State) {
        s.nodeGeneration &+= 1
        if !s.parked.isEmpty {
            s.pending.formUnion(s.parked)
            s.parked.removeAll()
        }
    }
}
