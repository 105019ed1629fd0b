/// A feasibility check: whether a node may run a task at all.
public protocol PlacementFilter: Sendable {
    /// The name recorded in decisions ("node-ready", "resources-fit", ...).
    var name: String { get }
    func admits(_ request: PlacementRequest, _ node: NodeInfo) -> Bool
}

/// Only ready nodes that are not cordoned take new tasks (draining, not-ready and down nodes don't).
public struct NodeReadyFilter: PlacementFilter {
    public init() {}
    public var name: String { "node-not-ready" }
    public func admits(_ request: PlacementRequest, _ node: NodeInfo) -> Bool {
        node.state == .ready && node.schedulable
    }
}

/// The task's request must fit in what the node has left, in cpu and in memory: no node is ever
/// over-committed.
public struct ResourcesFitFilter: PlacementFilter {
    public init() {}
    public var name: String { "insufficient-resources" }
    public func admits(_ request: PlacementRequest, _ node: NodeInfo) -> Bool {
        request.resources.fits(in: node.free)
    }
}

/// Every label of the task's node selector must be on the node with the same value.
public struct NodeSelectorFilter: PlacementFilter {
    public init() {}
    public var name: String { "node-selector-mismatch" }
    public func admits(_ request: PlacementRequest, _ node: NodeInfo) -> Bool {
        request.nodeSelector.allSatisfy { node.labels[$0.key] == $0.value }
    }
}
