import ClusterModel
import Store

/// Workers' reports applied to the store: `TaskReport.decide`, then a compare-and-swap write.
extension ClusterRepository {
    /// Applies a worker's report with compare-and-swap, re-reading on conflicts (the scheduler or
    /// another report may write the same task or node at the same time). Returns whether the
    /// reported assignment is still current.
    @discardableResult
    public func apply(_ report: TaskReport, taskID: String, nodeID: String, epoch: UInt64, now: Int64, runtimeStartMs: Int64? = nil) async throws -> Bool {
        for _ in 0..<20 {
            let task: TaskRecord
            do {
                task = try await self.task(taskID, consistency: .linearizable)
            } catch RepositoryError.notFound {
                return false
            }
            switch report.decide(for: task, from: nodeID, epoch: epoch, now: now, runtimeStartMs: runtimeStartMs) {
            case .stale:
                return false
            case .unchanged:
                return true
            case .update(let updated):
                do {
                    try await update(updated)
                    return true
                } catch RepositoryError.conflict {
                    continue
                }
            case .release(let updated):
                let node = try await self.node(nodeID, consistency: .linearizable)
                do {
                    try await release(task, as: updated, from: node)
                    return true
                } catch RepositoryError.conflict {
                    continue
                }
            }
        }
        throw RepositoryError.conflict("task \(taskID) kept changing while applying a report from \(nodeID)")
    }

    /// The current assignments of one node: tasks assigned to it or running on it.
    public func assignments(of nodeID: String, consistency: ReadConsistency = .serializable) async throws -> (tasks: [TaskRecord], revision: Int64) {
        let (tasks, revision) = try await self.tasks(consistency: consistency)
        return (tasks.filter { $0.node == nodeID && ($0.state == .assigned || $0.state == .running) }, revision)
    }
}
