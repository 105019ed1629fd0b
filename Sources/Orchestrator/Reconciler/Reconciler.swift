import ClusterModel

/// One change the reconciler wants, in the order it must be written. Task changes name the task
/// and carry the record as the reconciler saw it plus what to change; the round applies each to
/// the record as it is when written (an earlier action may have written it already).
public enum ReconcileAction: Sendable, Hashable {
    /// The node's state follows its heartbeats (`HealthPolicy`).
    case markNode(id: String, state: NodeState)
    /// Take the task off a down node, giving its resources back: as lost (its own write and event
    /// before any restart), or back to pending when it was already moving off a draining node.
    case evacuate(taskID: String, node: String, to: TaskState, reason: String)
    /// Ask the worker of a draining node to stop the task's copy (`TaskRecord.moving`); the task
    /// keeps its node and resources until the worker confirms the stop, then goes back to pending.
    case requestMove(taskID: String, node: String, reason: String)
    /// Make an ended or lost task pending again after `delay` ms, its restart number `retry`.
    case restart(taskID: String, retry: Int, delay: Int64, reason: String)
    /// Say once why a lost task stays lost.
    case explain(taskID: String, reason: String)
}

/// The leader's self-healing rules as a pure function (the planning half of ``ReconcileRound``):
/// from the nodes with their silences (`HeartbeatObservations`), the tasks and a seeded
/// jitter source, the changes to write. No store, no clock: the rules are tested as tables.
///
/// The rules, in order:
/// 1. A node's state is what `HealthPolicy` says of its silence (draining survives until down).
/// 2. Assigned or running tasks on a down node are lost (the worker fenced itself before the node
///    went down: its lease is shorter). On a draining node they are asked to stop, and go back to
///    pending with no restart counted (the task did nothing wrong) only when the worker confirms
///    the stop, or its node goes down: a new copy never starts while the old one may still run.
/// 3. Failed, completed and lost tasks (including the ones rule 2 just lost) restart if their
///    policy says so, with the policy's backoff spread by jitter; a lost task that stays lost says
///    why, once.
///
/// Restarting here rather than where a worker reports the ending keeps two separate writes (and
/// two events: failed, then rescheduled), and a leader that crashes between them loses nothing:
/// the next leader's pass finds the failed task and applies the same policy.
public struct Reconciler: Sendable {
    public var policy: HealthPolicy

    public init(policy: HealthPolicy = HealthPolicy()) {
        self.policy = policy
    }

    /// The actions for one pass. `jitter` supplies numbers in [0, 1) from a seeded generator, one
    /// per restart decision, in task order.
    /// `silences` holds each node's milliseconds without a heartbeat; a node missing from it has
    /// just been heard from.
    public func plan(nodes: [NodeRecord], silences: [String: Int64], tasks: [TaskRecord], jitter: () -> Double) -> [ReconcileAction] {
        var actions: [ReconcileAction] = []
        var state: [String: NodeState] = [:]
        state.reserveCapacity(nodes.count)
        var changed: [(id: String, state: NodeState)] = []
        for node in nodes {
            let next = policy.state(of: node, silence: silences[node.info.id] ?? 0)
            if next != node.info.state { changed.append((node.info.id, next)) }
            state[node.info.id] = next
        }
        // Only what changes is put in order: a pass runs every second, and with 5,000 nodes and
        // 100,000 tasks it took an eighth of a busy leader's samples, most of it sorting them all.
        for node in changed.sorted(by: { $0.id < $1.id }) { actions.append(.markNode(id: node.id, state: node.state)) }
        let concerned = tasks.filter { task in
            switch task.state {
            case .failed, .completed, .lost: true
            case .assigned, .running:
                task.node.map { state[$0] == .down || state[$0] == .draining } ?? false
            case .pending, .cancelled: false
            }
        }
        for task in concerned.sorted(by: { $0.id < $1.id }) {
            var ended = task.state
            var reason = task.reason
            if task.state == .assigned || task.state == .running, let nodeID = task.node {
                switch state[nodeID] {
                case .down where task.moving != nil:
                    // Asked to move and its node is gone past the worker's lease: the copy is stopped.
                    actions.append(.evacuate(taskID: task.id, node: nodeID, to: .pending, reason: "node \(nodeID) down while moving"))
                    continue
                case .down:
                    reason = "node \(nodeID) down"
                    actions.append(.evacuate(taskID: task.id, node: nodeID, to: .lost, reason: reason))
                    ended = .lost
                case .draining where task.moving == nil:
                    actions.append(.requestMove(taskID: task.id, node: nodeID, reason: "node \(nodeID) draining"))
                    continue
                default:
                    continue
                }
            }
            guard ended == .failed || ended == .completed || ended == .lost else { continue }
            let policy = task.spec.restartPolicy
            switch policy.decide(after: ended, retries: task.retries, jitter: jitter()) {
            case .restart(let delay):
                let ending = ended == .lost ? reason : "\(ended.rawValue)\(task.exitCode.map { " with exit code \($0)" } ?? "")"
                let retry = task.retries + 1
                actions.append(.restart(taskID: task.id, retry: retry, delay: delay, reason: "\(ending); restart \(retry) of \(policy.maxRetries)"))
            case .stop(let why):
                if ended == .lost, !reason.contains(why) {
                    actions.append(.explain(taskID: task.id, reason: reason + "; " + why))
                }
            }
        }
        return actions
    }
}
