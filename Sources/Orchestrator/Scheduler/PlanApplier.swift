import ClusterModel

/// The writing half of a scheduling pass (Nomad's plan applier): commits the planner's batches
/// with compare-and-swap and, when a batch meets a concurrent change, reads what changed and has
/// the planner decide those tasks again.
///
/// A batch is one transaction guarded by the revision of every task and node it writes, so it
/// costs one Raft round trip instead of one per task, and a stale view can delay a task but never
/// over-commit a node. A refused batch is decided again against its nodes as they are now
/// (usually one node changed: a cordon, a task that ended, a join) and committed node by node,
/// one transaction per node, all at once: under churn every ended task rewrites its node, so a
/// batch over many nodes meets a change again more often than not, and one busy node must hold
/// back only its own tasks. A node refused again is re-read and decided again, twice more (its
/// tasks re-read too the last time); what is still refused waits for the next round, which the
/// leader loop starts at once after a conflict.
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
        var batch = await replan(planned, rereadingTasks: false, planner: &planner, scheduler: &scheduler)
        for attempt in 0..<Self.nodeByNodeAttempts {
            if batch.isEmpty { return }
            let refused = try await commitByNode(batch)
            if refused.isEmpty || attempt == Self.nodeByNodeAttempts - 1 { return }
            // Their nodes changed again (or, from the second time, maybe the tasks): read those
            // as they are now and decide them again.
            batch = await replan(refused, rereadingTasks: attempt > 0, planner: &planner, scheduler: &scheduler)
        }
    }

    /// Node-by-node commits of a refused batch before its last refused tasks wait for the next
    /// round (which the loop starts at once after a conflict).
    static let nodeByNodeAttempts = 3

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
        record(written, placed: batch.count)
        return true
    }

    /// One transaction per node of `batch`, run at once (their proposals share Raft rounds).
    /// Returns the placements of the nodes whose transaction was refused, in `batch`'s order.
    private mutating func commitByNode(_ batch: [Placement]) async throws -> [Placement] {
        var groups: [String: [Int]] = [:]
        for (i, placement) in batch.enumerated() { groups[placement.record.node, default: []].append(i) }
        if groups.count == 1 { return try await commit(batch) ? [] : batch }
        let (repository, nodes, now) = (self.repository, self.nodes, self.now)
        let outcomes = try await withThrowingTaskGroup(of: ([Int], ClusterRepository.AssignedBatch?).self) { group in
            for indices in groups.values {
                let placements = indices.map { (batch[$0].task, batch[$0].record) }
                group.addTask { (indices, try await repository.assignBatch(placements, nodes: nodes, now: now)) }
            }
            var outcomes: [([Int], ClusterRepository.AssignedBatch?)] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        var refused: [Int] = []
        for (indices, written) in outcomes {
            if let written {
                record(written, placed: indices.count)
            } else {
                result.conflicts += 1
                refused += indices
            }
        }
        return refused.sorted().map { batch[$0] }
    }

    /// Notes a committed transaction: counts it, and keeps what it wrote as the nodes' revisions
    /// to guard next and in the cache.
    private mutating func record(_ written: ClusterRepository.AssignedBatch, placed: Int) {
        result.placed += placed
        result.commits += 1
        for node in written.nodes {
            nodes[node.info.id] = node
            cache?.record(node)
        }
        for task in written.tasks { cache?.record(task) }
    }

    /// Reads the batch's nodes (and tasks, if asked) as they are now, hands them to the planner
    /// and returns its new decisions for the tasks that are still pending.
    private mutating func replan(_ batch: [Placement], rereadingTasks: Bool,
                                 planner: inout PlacementPlanner, scheduler: inout Scheduler) async -> [Placement] {
        // The reads go out at once: a node's record must be as fresh as possible when its
        // transaction follows, and concurrent linearizable reads share one ReadIndex round, where
        // one after another they took a round trip each (under churn most nodes changed again
        // before the last read returned).
        let repository = self.repository
        let nodeIDs = Set(batch.map(\.record.node)).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let read = await Self.all(nodeIDs) { try? await repository.node($0, consistency: .linearizable) }
        var fresh: [NodeInfo] = []
        for node in read.compactMap({ $0 }) {
            nodes[node.info.id] = node
            cache?.record(node)
            fresh.append(node.info)
        }
        planner.reset(nodes: fresh)
        var tasks = batch.map(\.task)
        if rereadingTasks {
            let ids = tasks.map(\.id)
            let current = await Self.all(ids) { try? await repository.task($0, consistency: .linearizable) }
            tasks = []
            for t in current.compactMap({ $0 }) {
                cache?.record(t)
                if t.state == .pending { tasks.append(t) }
            }
        }
        return planner.replan(tasks, using: &scheduler)
    }

    /// `read` of every id at once, the results in the ids' order.
    private static func all<R: Sendable>(_ ids: [String], _ read: @escaping @Sendable (String) async -> R?) async -> [R?] {
        await withTaskGroup(of: (Int, R?).self) { group in
            for (i, id) in ids.enumerated() {
                group.addTask { (i, await read(id)) }
            }
            var results = [R?](repeating: nil, count: ids.count)
            for await (i, result) in group { results[i] = result }
            return results
        }
    }
}
