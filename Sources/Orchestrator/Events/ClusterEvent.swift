/// The kinds of change the event stream reports (the SSE `event:` field).
public enum ClusterEventType: String, Sendable, Hashable, Codable, CaseIterable {
    case taskCreated = "task_created"
    case taskAssigned = "task_assigned"
    case taskRunning = "task_running"
    case taskCompleted = "task_completed"
    case taskFailed = "task_failed"
    /// Pending again after being assigned, running, lost, failed or completed (restart policy, drain).
    case taskRescheduled = "task_rescheduled"
    case taskCancelled = "task_cancelled"
    case taskLost = "task_lost"
    /// The task's record was removed from the store (garbage collection).
    case taskDeleted = "task_deleted"
    case nodeJoined = "node_joined"
    case nodeReady = "node_ready"
    case nodeNotReady = "node_not_ready"
    case nodeDown = "node_down"
    /// The node entered draining: its tasks are being moved elsewhere.
    case nodeDrained = "node_drained"
    case nodeCordoned = "node_cordoned"
    case nodeUncordoned = "node_uncordoned"
    case nodeRemoved = "node_removed"
    case leaderElected = "leader_elected"
}

/// One typed change, derived from one key-value change of the store.
public struct ClusterEvent: Sendable, Hashable {
    /// What the event is about, as it is after the change.
    public enum Subject: Sendable, Hashable {
        case task(TaskRecord)
        case node(NodeRecord)
        case leader(LeaderRecord)
        /// A deleted task or node: only its id is left.
        case removed(id: String)
    }

    public var type: ClusterEventType
    /// The store revision of the change (the SSE `id:` is derived from it).
    public var revision: Int64
    public var subject: Subject
    /// The task's or node's state before the change, when it existed.
    public var previousState: String?

    public init(type: ClusterEventType, revision: Int64, subject: Subject, previousState: String? = nil) {
        self.type = type
        self.revision = revision
        self.subject = subject
        self.previousState = previousState
    }
}

/// The `data:` of an SSE message: `{"type","revision","task"|"node"|"leader"|"id","previous_state"}`.
struct ClusterEventView: Encodable {
    var event: ClusterEvent

    enum CodingKeys: String, CodingKey {
        case type, revision, task, node, leader, id
        case previousState = "previous_state"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(event.type, forKey: .type)
        try c.encode(event.revision, forKey: .revision)
        try c.encodeIfPresent(event.previousState, forKey: .previousState)
        switch event.subject {
        case .task(let task): try c.encode(TaskView(task), forKey: .task)
        case .node(let node): try c.encode(NodeView(node), forKey: .node)
        case .leader(let leader): try c.encode(leader, forKey: .leader)
        case .removed(let id): try c.encode(id, forKey: .id)
        }
    }
}
