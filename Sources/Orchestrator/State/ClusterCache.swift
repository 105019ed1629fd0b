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
public final class ClusterCache: Sendable {
    private struct State {
        var tasks: [String: TaskRecord] = [:]
        var pending: Set<String> = []
        var nodes: [String: NodeRecord] = [:]
        /// The store revision everything here reflects.
        var revision: Int64 = 0
        var synced = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Whether the copy has been filled (a first list succeeded) and is following the watch.
    public var isSynced: Bool { state.withLock { $0.synced } }

    /// The store revision the copy reflects.
    public var revision: Int64 { state.withLock { $0.revision } }

    /// Pending tasks whose backoff has ended, oldest first.
    public func pendingTasks(readyAt now: Int64) -> [TaskRecord] {
        let pending = state.withLock { s in s.pending.compactMap { s.tasks[$0] } }
        return pending.filter { ($0.notBefore ?? 0) <= now }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Every task (in no particular order).
    public func tasks() -> [TaskRecord] { state.withLock { Array($0.tasks.values) } }

    /// Every node, in key order (as a list of the store returns them).
    public func nodes() -> [NodeRecord] {
        state.withLock { Array($0.nodes.values) }.sorted { $0.info.id.utf8.lexicographicallyPrecedes($1.info.id.utf8) }
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
            s = fresh
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
            s.tasks[id] = nil
            s.pending.remove(id)
            return true
        }
        if kv.key.starts(with: ClusterRepository.nodePrefix) {
            s.nodes[String(decoding: kv.key.dropFirst(ClusterRepository.nodePrefix.count), as: UTF8.self)] = nil
            return true
        }
        return false
    }

    private static func put(_ task: TaskRecord, into s: inout State) {
        if let held = s.tasks[task.id], held.revision >= task.revision { return }
        s.tasks[task.id] = task
        if task.state == .pending { s.pending.insert(task.id) } else { s.pending.remove(task.id) }
    }

    private static func put(_ node: NodeRecord, into s: inout State) {
        if let held = s.nodes[node.info.id], held.revision >= node.revision { return }
        s.nodes[node.info.id] = node
    }
}
