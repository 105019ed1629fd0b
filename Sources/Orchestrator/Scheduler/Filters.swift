import ClusterModel

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

    public func admits(_ request: PlacementRequest, _ node: NodeInfo) -> Bool {
        withUnsafePointer(to: node) { admits(request, $0) }
    }

    /// The same, reading only the fields it needs through the pointer (the scheduler's hot loop:
    /// no copy of the node, so no retain of its id or labels).
    @inlinable
    public func admits(_ request: PlacementRequest, _ node: UnsafePointer<NodeInfo>) -> Bool {
        switch self {
        case .nodeReady:
            return node.pointee.state == .ready && node.pointee.schedulable
        case .resourcesFit:
            let allocated = node.pointee.allocated, capacity = node.pointee.capacity
            return allocated.cpu + request.resources.cpu <= capacity.cpu
                && allocated.memory + request.resources.memory <= capacity.memory
        case .nodeSelector:
            if request.nodeSelector.isEmpty { return true }
            return request.nodeSelector.allSatisfy { node.pointee.labels[$0.key] == $0.value }
        }
    }
}
