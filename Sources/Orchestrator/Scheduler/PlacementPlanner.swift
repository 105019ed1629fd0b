import ClusterModel

/// One decided placement: the task as read and where the scheduler put it.
public struct Placement: Sendable, Hashable {
    public var task: TaskRecord
    public var record: PlacementRecord

    public init(task: TaskRecord, record: PlacementRecord) {
        self.task = task
        self.record = record
    }
}

/// How a scheduling pass cuts its work into transactions and how often it explains a wait.
public struct PlanLimits: Sendable, Hashable {
    /// Most placements in one transaction.
    public var batchSize = 120
    /// Most writes (tasks plus distinct nodes) in one transaction: etcd's default limit of 128
    /// operations. Bin packing fills 120 tasks into a batch (they land on 2 or 3 nodes), spread
    /// about 64 (each on its own node).
    public var maxWritesPerTxn = 128
    /// A waiting task's reason is written when it has none, and afterwards at most this often.
    public var reasonRefreshMs: Int64 = 5_000
    /// Most reason writes per pass.
    public var maxReasonUpdates = 500

    public init(batchSize: Int = 120) {
        self.batchSize = max(1, batchSize)
    }
}

/// The pure half of a scheduling pass (Nomad's scheduler, as opposed to its plan applier): from
/// the pending tasks, oldest first, and a view of the nodes, it decides batches of placements,
/// booking each one into its view so later decisions see it. It reads no store and no clock.
///
/// The applier asks for one batch at a time and commits it; when a commit meets a concurrent
/// change it hands the planner the nodes as they are now (``reset(nodes:)``) and the batch's
/// tasks to decide again (``replan(_:using:)``). Within a pass nodes only fill up, so a request
/// that fitted nowhere fits nowhere again: identical requests (a backlog is mostly copies) are
/// answered from a memo without another pass over every node, until a reset.
///
/// Why a task waits is written with the task, but not at any cost: a backlog of thousands of
/// unschedulable tasks would otherwise mean thousands of writes per pass, each changing only a
/// count in the message. ``reasonUpdates`` holds a task whose reason is missing, or (only when
/// the pass placed nothing) stale for `reasonRefreshMs`, at most `maxReasonUpdates` of them.
public struct PlacementPlanner: Sendable {
    public let limits: PlanLimits
    public let now: Int64
    /// The nodes as this pass sees them, its own placements booked in.
    public private(set) var view: [NodeInfo]
    /// Tasks that fitted nowhere so far (each counted once per decision).
    public private(set) var unschedulable = 0
    /// The ids of the tasks that fitted nowhere, in the order decided.
    public private(set) var unschedulableIDs: [String] = []
    private var position: [String: Int] = [:]
    private var queue: ArraySlice<TaskRecord>
    private var memo: [UnschedulableKey: String] = [:]
    private var firstReasons: [TaskRecord] = []
    private var staleReasons: [TaskRecord] = []

    public init(pending: [TaskRecord], nodes: [NodeInfo], now: Int64, limits: PlanLimits = PlanLimits()) {
        self.limits = limits
        self.now = now
        self.view = nodes
        self.queue = pending[...]
        for (i, n) in nodes.enumerated() { position[n.id] = i }
    }

    /// Whether undecided tasks remain.
    public var isDone: Bool { queue.isEmpty }

    /// Decides the next batch: placements until `batchSize`, or until the next task could bring
    /// one node too many for `maxWritesPerTxn`. Empty only when every task has been decided.
    public mutating func nextBatch(using scheduler: inout Scheduler) -> [Placement] {
        var batch: [Placement] = []
        var nodes: Set<String> = []
        while let task = queue.popFirst() {
            guard let placement = decide(task, using: &scheduler) else { continue }
            batch.append(placement)
            nodes.insert(placement.record.node)
            // The next task may bring one more node: close the batch while both still fit.
            if batch.count >= limits.batchSize || batch.count + nodes.count + 2 > limits.maxWritesPerTxn { break }
        }
        return batch
    }

    /// Decides `tasks` again (after a conflict) against the current view; the ones that fit
    /// nowhere now are counted unschedulable.
    public mutating func replan(_ tasks: [TaskRecord], using scheduler: inout Scheduler) -> [Placement] {
        tasks.compactMap { decide($0, using: &scheduler) }
    }

    /// Replaces the view of the given nodes with what the store holds now (after a conflict) and
    /// forgets what was learnt about unschedulable requests, since room may have appeared.
    public mutating func reset(nodes: [NodeInfo]) {
        for node in nodes {
            if let i = position[node.id] { view[i] = node } else {
                position[node.id] = view.count
                view.append(node)
            }
        }
        memo.removeAll()
    }

    /// The reason writes this pass should make: missing reasons always, stale ones only when it
    /// placed nothing (a cluster in motion would make their messages wrong by the next pass).
    public func reasonUpdates(placedAny: Bool) -> [TaskRecord] {
        placedAny ? firstReasons : firstReasons + staleReasons
    }

    /// Runs a whole pass with no store: every batch as if it committed. For tests and benchmarks.
    public static func plan(pending: [TaskRecord], nodes: [NodeInfo], now: Int64, limits: PlanLimits = PlanLimits(),
                            scheduler: inout Scheduler) -> (batches: [[Placement]], planner: PlacementPlanner) {
        var planner = PlacementPlanner(pending: pending, nodes: nodes, now: now, limits: limits)
        var batches: [[Placement]] = []
        while !planner.isDone {
            let batch = planner.nextBatch(using: &scheduler)
            if !batch.isEmpty { batches.append(batch) }
        }
        return (batches, planner)
    }

    private mutating func decide(_ task: TaskRecord, using scheduler: inout Scheduler) -> Placement? {
        let key = UnschedulableKey(resources: task.spec.resources, nodeSelector: task.spec.nodeSelector, algorithm: task.spec.scheduler)
        let decision: PlacementDecision
        if let reason = memo[key] {
            decision = .unschedulable(reason: reason, filters: [])
        } else {
            decision = scheduler.place(task.placementRequest, on: view)
        }
        switch decision {
        case .unschedulable(let reason, _):
            unschedulable += 1
            unschedulableIDs.append(task.id)
            memo[key] = reason
            noteReason(reason, for: task)
            return nil
        case .placed(let nodeID, let score, let algorithm, let filters):
            // Book the resources in the view at once, so later decisions see them.
            let i = position[nodeID]!
            view[i].allocated = view[i].allocated + task.spec.resources
            view[i].taskCount += 1
            return Placement(task: task, record: PlacementRecord(node: nodeID, score: score, algorithm: algorithm, filters: filters))
        }
    }

    private mutating func noteReason(_ reason: String, for task: TaskRecord) {
        guard firstReasons.count + staleReasons.count < limits.maxReasonUpdates, task.reason != reason,
              task.reason.isEmpty || now - task.updatedAt >= limits.reasonRefreshMs else { return }
        var t = task
        t.reason = reason
        t.updatedAt = now
        if task.reason.isEmpty { firstReasons.append(t) } else { staleReasons.append(t) }
    }
}

extension TaskRecord {
    /// What the scheduler is asked for this task.
    public var placementRequest: PlacementRequest {
        PlacementRequest(taskID: id, resources: spec.resources, nodeSelector: spec.nodeSelector, algorithm: spec.scheduler)
    }
}

/// What makes two placement requests interchangeable for the scheduler.
struct UnschedulableKey: Hashable {
    var resources: Resources
    var nodeSelector: [String: String]
    var algorithm: SchedulingAlgorithm?
}
