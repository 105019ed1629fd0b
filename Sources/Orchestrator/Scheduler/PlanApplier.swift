import ClusterModel

/// The writing half of a scheduling pass (Nomad's plan applier): commits the planner's batches
/// with compare-and-swap and, when a batch meets a concurrent change, reads what changed and has
/// the planner decide those tasks again.
///
/// A batch is one transaction guarded by the revision of every task and node it writes, so it
/// costs one Raft round trip instead of one per task, and a stale view can delay a task but never
/// over-commit a node. A refused batch is decided again as one batch against its nodes as they
/// are now (usually one node changed: a cordon, a task that ended, a join); refused again (a task
/// changed too, or the nodes keep changing), its tasks go one by one, each re-read, so that no
/// single record holds back the rest.
///
/// Every record it writes also goes into the leader's ``ClusterCache``, if it has one, so the
/// next pass sees its own writes before the watch delivers them.
struct PlanApplier {
    let repository: ClusterRepository
    let cache: ClusterCache?
    let now: Int64
    /// The node records the planner's view was built from, with the revisions to guard.
    private(set) var nodes: [String: NodeRecord]
    private(set) var result = RoundResult()

    init(repository: ClusterRepository, cache: ClusterCache?, nodes: [NodeRecord], now: Int64) {
        self.repository = repository
        self.cache = cache
        self.now = now
        self.nodes = Dictionary(nodes.map { ($0.info.id, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Commits `planned`, re-planning through `planner` what conflicts.
    mutating func apply(_ planned: [Placement], planner: inout PlacementPlanner, scheduler: inout Scheduler) async throws {
        if try await commit(planned) { return }
        let batch = await replan(planned, rereadingTasks: false, planner: &planner, scheduler: &scheduler)
        if batch.isEmpty { return }
        if try await commit(batch) { return }
        for placement in batch {
            var single = [placement]
            for _ in 0..<2 {
                single = await replan(single, rereadingTasks: true, planner: &planner, scheduler: &scheduler)
                if single.isEmpty { break }
                if try await commit(single) { break }
            }
        }
    }

    /// Writes why tasks wait, after the placements and in batches. Best effort: a batch that meets
    /// a changed task is dropped and the next pass writes what is still true.
    func recordReasons(_ tasks: [TaskRecord], batchSize: Int) async {
        var start = 0
        while start < tasks.count {
            let chunk = Array(tasks[start..<min(start + batchSize, tasks.count)])
            start += chunk.count
            if let stored = try? await repository.updateBatch(chunk) {
                for task in stored { cache?.record(task) }
            }
        }
    }

    /// One transaction for the batch. False (nothing written, a conflict counted) when any task or
    /// node changed since read.
    private mutating func commit(_ batch: [Placement]) async throws -> Bool {
        guard let written = try await repository.assignBatch(batch.map { ($0.task, $0.record) }, nodes: nodes, now: now) else {
            result.conflicts += 1
            return false
        }
        result.placed += batch.count
        result.commits += 1
        for node in written.nodes {
            nodes[node.info.id] = node
            cache?.record(node)
        }
        for task in written.tasks { cache?.record(task) }
        return true
    }

    /// Reads the batch's nodes (and tasks, if asked) as they are now, hands them to the planner
    /// and returns its new decisions for the tasks that are still pending.
    private mutating func replan(_ batch: [Placement], rereadingTasks: Bool,
                                 planner: inout PlacementPlanner, scheduler: inout Scheduler) async -> [Placement] {
        var fresh: [NodeInfo] = []
        for nodeID in Set(batch.map(\.record.node)) {
            guard let node = try? await repository.node(nodeID, consistency: .linearizable) else { continue }
            nodes[nodeID] = node
            cache?.record(node)
            fresh.append(node.info)
        }
        planner.reset(nodes: fresh)
        var tasks = batch.map(\.task)
        if rereadingTasks {
            var current: [TaskRecord] = []
            for task in tasks {
                guard let t = try? await repository.task(task.id, consistency: .linearizable) else { continue }
                cache?.record(t)
                if t.state == .pending { current.append(t) }
            }
            tasks = current
        }
        return planner.replan(tasks, using: &scheduler)
    }
}
