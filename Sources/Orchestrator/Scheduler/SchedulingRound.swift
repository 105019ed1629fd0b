/// What one scheduling pass did.
public struct RoundResult: Sendable, Hashable {
    public var placed = 0
    public var unschedulable = 0
    /// Placements lost to a concurrent writer; those tasks are retried in the next round.
    public var conflicts = 0
}

/// One pass of the leader's scheduler over the pending tasks, oldest first: decide with the
/// in-memory `Scheduler`, then commit each placement with compare-and-swap. A conflict (the node
/// or the task changed under us) re-reads the node and tries once more; what still fails waits for
/// the next round, so a stale view can delay a task but never over-commit a node.
public struct SchedulingRound: Sendable {
    public let repository: ClusterRepository

    public init(repository: ClusterRepository) {
        self.repository = repository
    }

    public func run(_ scheduler: inout Scheduler, now: Int64) async throws -> RoundResult {
        var result = RoundResult()
        let pending = try await repository.tasks(consistency: .linearizable).tasks
            .filter { $0.state == .pending && ($0.notBefore ?? 0) <= now }
            .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        guard !pending.isEmpty else { return result }
        var nodes = try await repository.nodes(consistency: .linearizable)
        var position: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { position[n.info.id] = i }

        for task in pending {
            var attempt = 0
            var current = task
            while attempt < 2 {
                attempt += 1
                let request = PlacementRequest(taskID: current.id, resources: current.spec.resources,
                                               nodeSelector: current.spec.nodeSelector, algorithm: current.spec.scheduler)
                let decision = scheduler.place(request, on: nodes.map(\.info))
                switch decision {
                case .unschedulable(let reason, _):
                    result.unschedulable += 1
                    if current.reason != reason {
                        current.reason = reason
                        current.updatedAt = now
                        _ = try? await repository.update(current)
                    }
                    attempt = 2
                case .placed(let nodeID, let score, let algorithm, let filters):
                    let i = position[nodeID]!
                    do {
                        let (_, node) = try await repository.assign(
                            current, to: nodes[i],
                            placement: PlacementRecord(node: nodeID, score: score, algorithm: algorithm, filters: filters), now: now)
                        nodes[i] = node
                        result.placed += 1
                        attempt = 2
                    } catch RepositoryError.conflict {
                        result.conflicts += 1
                        // Someone else wrote the node or the task: refresh both and decide again.
                        if let fresh = try? await repository.node(nodeID, consistency: .linearizable) { nodes[i] = fresh }
                        guard let t = try? await repository.task(current.id, consistency: .linearizable), t.state == .pending else {
                            attempt = 2
                            break
                        }
                        current = t
                    }
                }
            }
        }
        return result
    }
}
