/// What one reconciliation pass did.
public struct ReconcileResult: Sendable, Hashable {
    /// Nodes whose state changed, with the new state.
    public var nodeChanges: [String: NodeState] = [:]
    /// Tasks taken off down or draining nodes.
    public var lost = 0
    /// Of those, tasks made pending again (restart policy, or a drain hand-off).
    public var rescheduled = 0
    /// Tasks that ended (failed, completed) made pending again by their restart policy.
    public var restarted = 0
    public var conflicts = 0
}

/// The leader's self-healing pass: update node states from heartbeats (`HealthPolicy`), then take
/// the tasks off down nodes (marked lost) and off draining nodes (handed to other nodes), then
/// restart the tasks that were lost or ended on their worker when their restart policy says so. Every change is a compare-and-swap; a conflict waits for the next pass.
///
/// Restarting here rather than where a worker reports the ending keeps two separate writes (and
/// two events: failed, then rescheduled), and a leader that crashes between them loses nothing: the
/// next leader's pass finds the failed task and applies the same policy.
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

    /// `jitter` supplies numbers in [0, 1) for restart backoff (a seeded generator in tests).
    public func run(now: Int64, leaderSince: Int64, jitter: () -> Double) async throws -> ReconcileResult {
        var result = ReconcileResult()
        var nodes: [String: NodeRecord] = [:]
        let heartbeats = try await repository.heartbeats(consistency: .linearizable)
        for var node in try await repository.nodes(consistency: .linearizable) {
            node.lastHeartbeat = max(node.lastHeartbeat, heartbeats[node.info.id] ?? 0)
            let state = policy.state(of: node, now: now, leaderSince: leaderSince)
            if state != node.info.state {
                node.info.state = state
                do {
                    node = try await repository.save(node, expectRevision: node.revision)
                    result.nodeChanges[node.info.id] = state
                } catch RepositoryError.conflict {
                    result.conflicts += 1
                    continue
                }
            }
            nodes[node.info.id] = node
        }
        var tasks = if let cache, cache.isSynced { cache.tasks() } else { try await repository.tasks(consistency: .linearizable).tasks }
        let evacuate = nodes.values.filter { $0.info.state == .down || $0.info.state == .draining }
        if !evacuate.isEmpty {
            var changed = false
            for task in tasks where task.state == .assigned || task.state == .running {
                guard let nodeID = task.node, var node = nodes[nodeID],
                      node.info.state == .down || node.info.state == .draining else { continue }
                var updated = task
                updated.node = nil
                updated.updatedAt = now
                updated.placement = nil
                if node.info.state == .down {
                    // Lost first, as its own write (and event); the restart below is a second one.
                    updated.state = .lost
                    updated.reason = "node \(nodeID) down"
                    result.lost += 1
                } else {
                    // A drain hands tasks over without counting a restart: the task did nothing wrong.
                    updated.state = .pending
                    updated.reason = "node \(nodeID) draining; moving"
                    result.rescheduled += 1
                }
                do {
                    (_, node) = try await repository.release(task, as: updated, from: node)
                    nodes[nodeID] = node
                    changed = true
                } catch RepositoryError.conflict {
                    result.conflicts += 1
                }
            }
            if changed { tasks = try await repository.tasks(consistency: .linearizable).tasks }
        }
        for task in tasks where task.state == .failed || task.state == .completed || task.state == .lost {
            let decision = task.spec.restartPolicy.decide(after: task.state, retries: task.retries, jitter: jitter())
            guard case .restart(let delay) = decision else {
                // Say once why a lost task stays lost.
                if task.state == .lost, case .stop(let why) = decision, !task.reason.contains(why) {
                    var updated = task
                    updated.reason = task.reason + "; " + why
                    _ = try? await repository.update(updated)
                }
                continue
            }
            var updated = task
            updated.state = .pending
            updated.retries += 1
            updated.notBefore = now + delay
            updated.node = nil
            updated.placement = nil
            let ending = task.state == .lost ? task.reason : "\(task.state.rawValue)\(task.exitCode.map { " with exit code \($0)" } ?? "")"
            updated.reason = "\(ending); restart \(updated.retries) of \(task.spec.restartPolicy.maxRetries)"
            updated.exitCode = nil
            updated.updatedAt = now
            do {
                try await repository.update(updated)
                if task.state == .lost { result.rescheduled += 1 } else { result.restarted += 1 }
            } catch RepositoryError.conflict {
                result.conflicts += 1
            }
        }
        return result
    }
}
