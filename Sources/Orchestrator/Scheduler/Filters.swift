/// A feasibility check: whether a node may run a task at all. The set is closed (an enum rather
/// than a protocol) because the scheduler runs every filter on every node for every task: at
/// 1,000 nodes that is the hot loop, and a switch costs a fraction of a dynamic call.
public enum PlacementFilter: String, Sendable, Hashable, CaseIterable {
    /// Only ready nodes that are not cordoned take new tasks (draining, not-ready and down don't).
    case nodeReady = "node-not-ready"
    /// The task's request must fit in what the node has left, in cpu and in memory: no node is
    /// ever over-committed.
    case resourcesFit = "insufficient-resources"
    /// Every label of the task's node selector must be on the node with the same value.
    case nodeSelector = "node-selector-mismatch"

    /// The name recorded in decisions: what a node that fails it lacks.
    public var name: String { rawValue }

    @inlinable
    public func admits(_ request: PlacementRequest, _ node: borrowing NodeInfo) -> Bool {
        switch self {
        case .nodeReady:
            return node.state == .ready && node.schedulable
        case .resourcesFit:
            return node.allocated.cpu + request.resources.cpu <= node.capacity.cpu
                && node.allocated.memory + request.resources.memory <= node.capacity.memory
        case .nodeSelector:
            if request.nodeSelector.isEmpty { return true }
            return request.nodeSelector.allSatisfy { node.labels[$0.key] == $0.value }
        }
    }
}
