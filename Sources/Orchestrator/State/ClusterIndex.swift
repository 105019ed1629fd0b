import ClusterModel

/// What `/metrics` reports about the records, as counted by a ``ClusterCache``.
public struct ClusterCounts: Sendable, Hashable {
    /// Tasks by state; every state is present (0 when none).
    public var tasks: [TaskState: Int]
    /// Nodes by state; every state is present.
    public var nodes: [NodeState: Int]
    /// Nodes accepting new tasks: ready and not cordoned.
    public var schedulableNodes: Int
    /// The store revision the counts reflect.
    public var revision: Int64

    public init(tasks: [TaskState: Int], nodes: [NodeState: Int], schedulableNodes: Int, revision: Int64) {
        self.tasks = tasks
        self.nodes = nodes
        self.schedulableNodes = schedulableNodes
        self.revision = revision
    }

    /// The counts of a full scan: what the maintained counts must always equal.
    public static func scan(tasks: some Sequence<TaskRecord>, nodes: some Sequence<NodeRecord>, revision: Int64) -> ClusterCounts {
        var counts = ClusterCounts(tasks: [:], nodes: [:], schedulableNodes: 0, revision: revision)
        for state in TaskState.allCases { counts.tasks[state] = 0 }
        for state in NodeState.allCases { counts.nodes[state] = 0 }
        for task in tasks { counts.tasks[task.state, default: 0] += 1 }
        for node in nodes {
            counts.nodes[node.info.state, default: 0] += 1
            if ClusterIndex.isSchedulable(node) { counts.schedulableNodes += 1 }
        }
        return counts
    }
}

/// Indexes over the cached records, kept up to date as each record changes, so that `/metrics`
/// and the assignment streams cost what they return rather than a scan of every task: counts by
/// task and node state, and task ids by the node they are placed on.
///
/// Every change goes through `replace(task:with:)` or `replace(node:with:)` with both the record
/// held before and the one held after (nil for none), which takes the old record's contribution
/// out and puts the new one's in.
struct ClusterIndex: Sendable {
    private(set) var taskCounts: [TaskState: Int] = [:]
    private(set) var nodeCounts: [NodeState: Int] = [:]
    private(set) var schedulableNodes = 0
    /// Ids of the tasks whose `node` is this node (assigned, running, or ended there and kept).
    private(set) var tasksByNode: [String: Set<String>] = [:]

    static func isSchedulable(_ node: NodeRecord) -> Bool { node.info.state == .ready && node.info.schedulable }

    mutating func replace(task old: TaskRecord?, with new: TaskRecord?) {
        if let old {
            taskCounts[old.state, default: 0] -= 1
            if let node = old.node {
                tasksByNode[node]?.remove(old.id)
                if tasksByNode[node]?.isEmpty == true { tasksByNode[node] = nil }
            }
        }
        if let new {
            taskCounts[new.state, default: 0] += 1
            if let node = new.node { tasksByNode[node, default: []].insert(new.id) }
        }
    }

    mutating func replace(node old: NodeRecord?, with new: NodeRecord?) {
        if let old {
            nodeCounts[old.info.state, default: 0] -= 1
            if Self.isSchedulable(old) { schedulableNodes -= 1 }
        }
        if let new {
            nodeCounts[new.info.state, default: 0] += 1
            if Self.isSchedulable(new) { schedulableNodes += 1 }
        }
    }

    /// The counts, with every state present.
    func counts(revision: Int64) -> ClusterCounts {
        var tasks = taskCounts
        var nodes = nodeCounts
        for state in TaskState.allCases where tasks[state] == nil { tasks[state] = 0 }
        for state in NodeState.allCases where nodes[state] == nil { nodes[state] = 0 }
        return ClusterCounts(tasks: tasks, nodes: nodes, schedulableNodes: schedulableNodes, revision: revision)
    }
}
