/// A worker's health as the masters see it.
public enum NodeState: String, Sendable, Hashable, Codable, CaseIterable {
    case ready
    case notReady = "not_ready"
    case draining
    case down
}

/// What the scheduler needs to know about a worker node.
public struct NodeInfo: Sendable, Hashable, Codable {
    public var id: String
    public var state: NodeState
    /// False once cordoned: running tasks stay, no new ones arrive.
    public var schedulable: Bool
    public var labels: [String: String]
    public var capacity: Resources
    /// The sum of the requests of the tasks placed on it.
    public var allocated: Resources
    public var taskCount: Int

    public init(id: String, state: NodeState = .ready, schedulable: Bool = true, labels: [String: String] = [:],
                capacity: Resources, allocated: Resources = .zero, taskCount: Int = 0) {
        self.id = id
        self.state = state
        self.schedulable = schedulable
        self.labels = labels
        self.capacity = capacity
        self.allocated = allocated
        self.taskCount = taskCount
    }

    /// What is still free.
    public var free: Resources { capacity - allocated }
}
