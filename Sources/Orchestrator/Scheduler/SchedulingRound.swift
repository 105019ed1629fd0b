import ClusterModel

/// What one scheduling pass did.
public struct RoundResult: Sendable, Hashable {
    public var placed = 0
    public var unschedulable = 0
    /// Pending tasks not considered: an earlier round found them fitting nowhere, and the nodes
    /// have not changed since (``ClusterCache/park(_:generation:)``).
    public var parked = 0
    /// Refused transactions (a concurrent writer changed a task or node); their tasks were decided
    /// again, and what still did not commit waits for the next pass.
    public var conflicts = 0
    /// Store transactions that committed placements.
    public var commits = 0
}

/// One pass of the leader's scheduler over the pending tasks: read them and the nodes, let the
/// pure ``PlacementPlanner`` decide batch by batch, and let the ``PlanApplier`` commit each batch
/// (re-planning what conflicts); then write why the others wait.
///
/// With a synced `cache` (the leader's informer) the pass reads pending tasks and nodes from
/// memory and records its own writes there; without one it lists and decodes the store.
public struct SchedulingRound: Sendable {
    public let repository: ClusterRepository
    public var limits: PlanLimits
    public var cache: ClusterCache?

    public init(repository: ClusterRepository, batchSize: Int = 120, cache: ClusterCache? = nil) {
        self.repository = repository
        self.limits = PlanLimits(batchSize: batchSize)
        self.cache = cache
    }

    public func run(_ scheduler: inout Scheduler, now: Int64) async throws -> RoundResult {
        let cache = self.cache.flatMap { $0.isSynced ? $0 : nil }
        let pending: [TaskRecord]
        var nodeGeneration: UInt64 = 0, parked = 0
        if let cache {
            (pending, nodeGeneration, parked) = cache.schedulingCandidates(readyAt: now)
        } else {
            pending = try await repository.tasks(consistency: .linearizable).tasks
                .filter { $0.state == .pending && ($0.notBefore ?? 0) <= now }
                .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
        guard !pending.isEmpty else { return RoundResult(parked: parked) }
        let nodes = if let cache { cache.nodes() } else { try await repository.nodes(consistency: .linearizable) }

        var planner = PlacementPlanner(pending: pending, nodes: nodes.map(\.info), now: now, limits: limits)
        var applier = PlanApplier(repository: repository, cache: cache, nodes: nodes, now: now)
        while !planner.isDone {
            let batch = planner.nextBatch(using: &scheduler)
            if !batch.isEmpty { try await applier.apply(batch, planner: &planner, scheduler: &scheduler) }
        }
        var result = applier.result
        result.unschedulable = planner.unschedulable
        result.parked = parked
        // Fitting nowhere, they wait aside until the nodes change (tasks placed in this round
        // changed them too, so a round that placed any parks nothing).
        cache?.park(planner.unschedulableIDs, generation: nodeGeneration)
        await applier.recordReasons(planner.reasonUpdates(placedAny: result.placed > 0), batchSize: limits.batchSize)
        return result
    }
}
