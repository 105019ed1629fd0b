/// What one scheduling pass did.
public struct RoundResult: Sendable, Hashable {
    public var placed = 0
    public var unschedulable = 0
    /// Placements lost to a concurrent writer; those tasks are retried in the next round.
    public var conflicts = 0
    /// Store transactions that committed placements.
    public var commits = 0
}

/// One pass of the leader's scheduler over the pending tasks, oldest first: decide with the
/// in-memory `Scheduler`, then commit the placements with compare-and-swap.
///
/// Placements are committed in batches: one transaction carries up to `batchSize` tasks and the
/// nodes they land on, guarded by the revision of every record it writes. A batch costs one Raft
/// round trip instead of one per task, which is what lets a leader place thousands of tasks per
/// second. If any record changed under us the whole batch is refused and its tasks are committed
/// one by one (re-reading on conflict), so a stale view can delay a task but never over-commit a
/// node. A batch also closes before its writes (tasks plus distinct nodes) pass `maxWritesPerTxn`,
/// etcd's default limit of 128 operations per transaction: bin packing fills 120 tasks into a
/// batch (they land on 2 or 3 nodes), spread about 64 (each on its own node).
///
/// With a synced `cache` (the leader's informer) the round reads pending tasks and nodes from
/// memory and records its own writes there; without one it lists and decodes the store.
///
/// Why a task waits is written with the task, but not at any cost: a backlog of thousands of
/// unschedulable tasks would otherwise mean thousands of writes per round, each changing only a
/// count in the message. A task's reason is written when it has none, and afterwards at most
/// every `reasonRefreshMs` and only by a round that placed nothing (while tasks are being placed the
/// message would be out of date by the next round); at most `maxReasonUpdates` per round, in
/// batches, after the placements.
public struct SchedulingRound: Sendable {
    public let repository: ClusterRepository
    public var batchSize: Int
    public var maxWritesPerTxn = 128
    public var cache: ClusterCache?
    public var reasonRefreshMs: Int64 = 5_000
    public var maxReasonUpdates = 500

    public init(repository: ClusterRepository, batchSize: Int = 120, cache: ClusterCache? = nil) {
        self.repository = repository
        self.batchSize = max(1, batchSize)
        self.cache = cache
    }

    public func run(_ scheduler: inout Scheduler, now: Int64) async throws -> RoundResult {
        var result = RoundResult()
        let cache = self.cache.flatMap { $0.isSynced ? $0 : nil }
        let pending: [TaskRecord]
        if let cache {
            pending = cache.pendingTasks(readyAt: now)
        } else {
            pending = try await repository.tasks(consistency: .linearizable).tasks
                .filter { $0.state == .pending && ($0.notBefore ?? 0) <= now }
                .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
        guard !pending.isEmpty else { return result }
        var nodes = if let cache { cache.nodes() } else { try await repository.nodes(consistency: .linearizable) }
        var position: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { position[n.info.id] = i }
        var infos = nodes.map(\.info)

        var batch: [(task: TaskRecord, placement: PlacementRecord)] = []
        var batchNodes: Set<String> = []
        // Within a round nodes only fill up, so a request that fitted nowhere fits nowhere again:
        // identical requests (a backlog is mostly copies) are answered without another pass over
        // every node. Cleared whenever a conflict refreshes the nodes.
        var unschedulable: [UnschedulableKey: String] = [:]
        var firstReasons: [TaskRecord] = [], staleReasons: [TaskRecord] = []
        for task in pending {
            let key = UnschedulableKey(resources: task.spec.resources, nodeSelector: task.spec.nodeSelector, algorithm: task.spec.scheduler)
            let decision: PlacementDecision
            if let reason = unschedulable[key] {
                decision = .unschedulable(reason: reason, filters: [])
            } else {
                let request = PlacementRequest(taskID: task.id, resources: task.spec.resources,
                                               nodeSelector: task.spec.nodeSelector, algorithm: task.spec.scheduler)
                decision = scheduler.place(request, on: infos)
            }
            switch decision {
            case .unschedulable(let reason, _):
                result.unschedulable += 1
                unschedulable[key] = reason
                if firstReasons.count + staleReasons.count < maxReasonUpdates, task.reason != reason,
                   task.reason.isEmpty || now - task.updatedAt >= reasonRefreshMs {
                    var t = task
                    t.reason = reason
                    t.updatedAt = now
                    if task.reason.isEmpty { firstReasons.append(t) } else { staleReasons.append(t) }
                }
            case .placed(let nodeID, let score, let algorithm, let filters):
                // Book the resources in the local view at once, so later decisions of this
                // round see them.
                let i = position[nodeID]!
                infos[i].allocated = infos[i].allocated + task.spec.resources
                infos[i].taskCount += 1
                batch.append((task, PlacementRecord(node: nodeID, score: score, algorithm: algorithm, filters: filters)))
                batchNodes.insert(nodeID)
                // The next task may bring one more node: close the batch while both still fit.
                if batch.count >= batchSize || batch.count + batchNodes.count + 2 > maxWritesPerTxn {
                    let conflicts = result.conflicts
                    try await commit(batch, nodes: &nodes, infos: &infos, position: position, now: now, result: &result, scheduler: &scheduler)
                    if result.conflicts != conflicts { unschedulable.removeAll() }
                    batch.removeAll(keepingCapacity: true)
                    batchNodes.removeAll(keepingCapacity: true)
                }
            }
        }
        if !batch.isEmpty {
            try await commit(batch, nodes: &nodes, infos: &infos, position: position, now: now, result: &result, scheduler: &scheduler)
        }
        // A round that placed tasks is a cluster in motion: the waiting tasks' messages would be
        // out of date by the next round, so only missing reasons are written then.
        await recordReasons(result.placed > 0 ? firstReasons : firstReasons + staleReasons)
        return result
    }

    /// Reads the given nodes again (linearizably) into `nodes` and the cache.
    private func refresh(_ ids: Set<String>, nodes: inout [NodeRecord], position: [String: Int]) async {
        for nodeID in ids {
            let i = position[nodeID]!
            if let fresh = try? await repository.node(nodeID, consistency: .linearizable) {
                nodes[i] = fresh
                cache?.record(fresh)
            }
        }
    }

    /// Writes why tasks wait, after the placements and in batches. Best effort: a batch that meets
    /// a changed task is dropped and the next round writes what is still true.
    private func recordReasons(_ tasks: [TaskRecord]) async {
        var start = 0
        while start < tasks.count {
            let chunk = Array(tasks[start..<min(start + batchSize, tasks.count)])
            start += chunk.count
            if let stored = try? await repository.updateBatch(chunk) {
                for task in stored { cache?.record(task) }
            }
        }
    }

    /// One transaction for the whole batch; on success the written records go into `nodes` and
    /// the cache. False (nothing written) when any task or node changed since read.
    private func commitAsOne(_ batch: [(task: TaskRecord, placement: PlacementRecord)], nodes: inout [NodeRecord],
                             position: [String: Int], now: Int64, result: inout RoundResult) async throws -> Bool {
        guard let written = try await repository.assignBatch(batch.map { ($0.task, $0.placement) }, nodes: nodes, now: now) else {
            return false
        }
        result.placed += batch.count
        result.commits += 1
        for node in written.nodes {
            nodes[position[node.info.id]!] = node
            cache?.record(node)
        }
        for task in written.tasks { cache?.record(task) }
        return true
    }

    /// Commits a batch in one transaction, or, when something changed, task by task.
    private func commit(_ batch: [(task: TaskRecord, placement: PlacementRecord)], nodes: inout [NodeRecord], infos: inout [NodeInfo],
                        position: [String: Int], now: Int64, result: inout RoundResult, scheduler: inout Scheduler) async throws {
        if try await commitAsOne(batch, nodes: &nodes, position: position, now: now, result: &result) { return }
        // Something changed under the batch: take its nodes as they are now and decide the batch
        // again, as one batch (usually one node changed: a cordon, a task that ended, a join).
        result.conflicts += 1
        await refresh(Set(batch.map(\.placement.node)), nodes: &nodes, position: position)
        infos = nodes.map(\.info)
        var retry: [(task: TaskRecord, placement: PlacementRecord)] = []
        for item in batch {
            let request = PlacementRequest(taskID: item.task.id, resources: item.task.spec.resources,
                                           nodeSelector: item.task.spec.nodeSelector, algorithm: item.task.spec.scheduler)
            guard case .placed(let nodeID, let score, let algorithm, let filters) = scheduler.place(request, on: infos) else { continue }
            let i = position[nodeID]!
            infos[i].allocated = infos[i].allocated + item.task.spec.resources
            infos[i].taskCount += 1
            retry.append((item.task, PlacementRecord(node: nodeID, score: score, algorithm: algorithm, filters: filters)))
        }
        if retry.isEmpty {
            result.unschedulable += batch.count
            return
        }
        if try await commitAsOne(retry, nodes: &nodes, position: position, now: now, result: &result) {
            result.unschedulable += batch.count - retry.count
            return
        }
        // Still refused (a task changed too, or the nodes keep changing): one by one, re-reading.
        result.conflicts += 1
        await refresh(Set(retry.map(\.placement.node)), nodes: &nodes, position: position)
        infos = nodes.map(\.info)
        for item in batch {
            guard var current = try? await repository.task(item.task.id, consistency: .linearizable) else { continue }
            cache?.record(current)
            guard current.state == .pending else { continue }
            for _ in 0..<2 {
                let request = PlacementRequest(taskID: current.id, resources: current.spec.resources,
                                               nodeSelector: current.spec.nodeSelector, algorithm: current.spec.scheduler)
                guard case .placed(let nodeID, let score, let algorithm, let filters) = scheduler.place(request, on: infos) else {
                    result.unschedulable += 1
                    break
                }
                let i = position[nodeID]!
                do {
                    let (task, node) = try await repository.assign(
                        current, to: nodes[i], placement: PlacementRecord(node: nodeID, score: score, algorithm: algorithm, filters: filters), now: now)
                    cache?.record(task)
                    cache?.record(node)
                    nodes[i] = node
                    infos[i] = node.info
                    result.placed += 1
                    result.commits += 1
                    break
                } catch RepositoryError.conflict {
                    result.conflicts += 1
                    if let fresh = try? await repository.node(nodeID, consistency: .linearizable) {
                        nodes[i] = fresh
                        infos[i] = fresh.info
                        cache?.record(fresh)
                    }
                    guard let t = try? await repository.task(current.id, consistency: .linearizable) else { break }
                    cache?.record(t)
                    guard t.state == .pending else { break }
                    current = t
                }
            }
        }
    }
}

/// What makes two placement requests interchangeable for the scheduler.
struct UnschedulableKey: Hashable {
    var resources: Resources
    var nodeSelector: [String: String]
    var algorithm: SchedulingAlgorithm?
}
