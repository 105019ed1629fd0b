import ClusterModel
import Store

/// How the masters take a report: the pure decision, then the write.
public enum ReportDecision: Sendable, Hashable {
    /// The report is about an assignment that is no longer the task's current one (the task was
    /// cancelled, rescheduled elsewhere, or assigned again with a newer epoch): the worker must stop
    /// that copy.
    case stale
    /// Already recorded: nothing to write.
    case unchanged
    /// Write the task (still on its node).
    case update(TaskRecord)
    /// Write the task off its node (ended, or pending after a move's stop was confirmed) and give
    /// its resources back to the node.
    case release(TaskRecord)
}

extension TaskReport {
    /// Decides what a report from `nodeID` about assignment `epoch` of `task` changes. Pure: no
    /// clock but `now`, no I/O, so the rules are tested as a table.
    public func decide(for task: TaskRecord, from nodeID: String, epoch: UInt64, now: Int64, runtimeStartMs: Int64? = nil) -> ReportDecision {
        guard task.node == nodeID, task.epoch == epoch, task.state == .assigned || task.state == .running else {
            return .stale
        }
        var t = task
        t.updatedAt = now
        switch self {
        case .running:
            guard task.state == .assigned else { return .unchanged }
            t.state = .running
            t.reason = ""
            t.runtimeStartMs = runtimeStartMs
            return .update(t)
        case .completed:
            t.state = .completed
            t.exitCode = 0
            t.reason = ""
        case .failed(let code, let reason):
            t.state = .failed
            t.exitCode = code
            t.reason = reason
        case .cancelled where task.moving != nil:
            // The stop the masters asked for, confirmed: the task may now start elsewhere, and
            // it did nothing wrong, so no restart is counted.
            t.state = .pending
            t.exitCode = nil
            t.reason = "\(task.moving ?? ""): stopped on \(nodeID), moving"
            t.placement = nil
        case .cancelled(let reason):
            t.state = .failed
            t.exitCode = nil
            t.reason = reason.isEmpty ? "stopped on the worker" : reason
        }
        t.node = nil
        t.moving = nil
        return .release(t)
    }
}
