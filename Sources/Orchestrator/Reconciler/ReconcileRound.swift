import ClusterModel

/// What one reconciliation pass did.
public struct ReconcileResult: Sendable, Hashable {
    /// Nodes whose state changed, with the new state.
    public var nodeChanges: [String: NodeState] = [:]
    /// Tasks taken off down nodes as lost.
    public var lost = 0
    /// Tasks made pending again by a drain hand-off, or lost tasks restarted by their policy.
    public var rescheduled = 0
    /// Tasks on draining nodes whose workers were asked to stop them (`TaskRecord.moving`).
    public var moving = 0
    /// Tasks that ended (failed, completed) made pending again by their restart policy.
    public var restarted = 0
    public var conflicts = 0
    /// Actions the repository refused as forbidden transitions (a bug, logged by the leader): the
    /// pass goes on with the others rather than letting one record stop all healing.
    public var refused: [String] = []
}

/// The leader's self-healing pass: read nodes, heartbeats and tasks, let the pure ``Reconciler``
/// decide, then write each action with compare-and-swap. A conflict skips that action (and the
/// ones that depend on it) until the next pass, which decides again from what is true then.
///
/// With a synced `cache` the tasks come from memory (every write here is a compare-and-swap, so a
/// lagging copy costs a conflict, never a wrong write); nodes and heartbeats are always read from
/// the store.
public struct ReconcileRound: Sendable {
    public let repository: ClusterRepository
    public var policy: HealthPolicy
    public var cache: ClusterCache?

    public init(repository: ClusterRepository, policy: HealthPolicy = HealthPolicy(), cache: ClusterCache? = nil) {
        self.repository = repository
        self.policy = policy
        self.cache = cache
    }

    /// `now` is the wall clock for the records written (restart backoffs, update times);
    /// `monotonicNow` times heartbeats in `observations`, which the caller keeps from pass to pass
    /// while it leads. `jitter` supplies numbers in [0, 1) for restart backoff, from a seeded
    /// generator.
    public func run(now: Int64, monotonicNow: Int64, observations: inout HeartbeatObservations,
                    jitter: () -> Double) async throws -> ReconcileResult {
        let heartbeats = try await repository.heartbeats(consistency: .linearizable)
        let nodeList = try await repository.nodes(consistency: .linearizable)
        let taskList = if let cache, cache.isSynced { cache.tasks() } else { try await repository.tasks(consistency: .linearizable).tasks }
        let silences = observations.observe(nodes: nodeList, heartbeats: heartbeats, at: monotonicNow)
        let actions = Reconciler(policy: policy).plan(nodes: nodeList, silences: silences, tasks: taskList, jitter: jitter)
        var writer = ActionWriter(repository: repository, now: now,
                                  nodes: Dictionary(nodeList.map { ($0.info.id, $0) }, uniquingKeysWith: { a, _ in a }),
                                  tasks: Dictionary(taskList.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }))
        for action in actions { try await writer.write(action) }
        return writer.result
    }
}

/// Writes reconcile actions in order, keeping the records it wrote so that a later action (the
/// restart of a task just lost) guards on the revision the earlier one produced.
private struct ActionWriter {
    let repository: ClusterRepository
    let now: Int64
    var nodes: [String: NodeRecord]
    var tasks: [String: TaskRecord]
    var result = ReconcileResult()
    /// Nodes whose state change was refused: their tasks wait for the next pass.
    var refusedNodes: Set<String> = []

    mutating func write(_ action: ReconcileAction) async throws {
        do {
            try await attempt(action)
        } catch RepositoryError.conflict {
            result.conflicts += 1
            switch action {
            case .markNode(let id, _): refusedNodes.insert(id)
            case .evacuate(let id, _, _, _), .restart(let id, _, _, _), .requestMove(let id, _, _): tasks[id] = nil
            case .explain: break
            }
        } catch RepositoryError.invalidTransition(let why) {
            result.refused.append(why)
        }
    }

    private mutating func attempt(_ action: ReconcileAction) async throws {
        switch action {
        case .markNode(let id, let state):
            guard var node = nodes[id] else { return }
            node.info.state = state
            nodes[id] = try await repository.save(node, expectRevision: node.revision)
            result.nodeChanges[id] = state

        case .evacuate(let id, let nodeID, let next, let reason):
            guard !refusedNodes.contains(nodeID), let task = tasks[id], let node = nodes[nodeID],
                  task.node == nodeID, task.state == .assigned || task.state == .running else { return }
            var updated = task
            updated.state = next
            updated.reason = reason
            updated.node = nil
            updated.placement = nil
            updated.updatedAt = now
            (tasks[id], nodes[nodeID]) = try await repository.release(task, as: updated, from: node)
            if next == .lost { result.lost += 1 } else { result.rescheduled += 1 }

        case .requestMove(let id, let nodeID, let reason):
            guard !refusedNodes.contains(nodeID), var task = tasks[id], task.node == nodeID, task.moving == nil,
                  task.state == .assigned || task.state == .running else { return }
            task.moving = reason
            task.reason = "\(reason): stopping here before moving"
            task.updatedAt = now
            tasks[id] = try await repository.update(task)
            result.moving += 1

        case .restart(let id, let retry, let delay, let reason):
            guard let task = tasks[id], task.state == .failed || task.state == .completed || task.state == .lost else { return }
            var updated = task
            updated.state = .pending
            updated.retries = retry
            updated.notBefore = now + delay
            updated.node = nil
            updated.placement = nil
            updated.reason = reason
            updated.exitCode = nil
            updated.updatedAt = now
            tasks[id] = try await repository.update(updated)
            if task.state == .lost { result.rescheduled += 1 } else { result.restarted += 1 }

        case .explain(let id, let reason):
            guard var task = tasks[id], task.state == .lost else { return }
            task.reason = reason
            tasks[id] = try await repository.update(task)
        }
    }
}
