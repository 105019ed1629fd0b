/// The scoring algorithms a cluster (`--scheduler`) or a single task may choose.
public enum SchedulingAlgorithm: String, Sendable, Hashable, Codable, CaseIterable {
    /// Feasible nodes in turn, in id order.
    case roundRobin = "roundrobin"
    /// Fill the fullest node that still fits: score = 0.7 x cpu utilisation + 0.3 x memory
    /// utilisation after placing the task, highest wins (the original design's formula).
    case binPacking = "binpacking"
    /// The node with the fewest tasks, then the lowest utilisation after placing, wins.
    case spread
}

/// What the scheduler is asked to place.
public struct PlacementRequest: Sendable, Hashable {
    public var taskID: String
    public var resources: Resources
    /// Every label here must be on the node with the same value.
    public var nodeSelector: [String: String]
    /// The task's own algorithm, overriding the cluster default.
    public var algorithm: SchedulingAlgorithm?

    public init(taskID: String, resources: Resources, nodeSelector: [String: String] = [:], algorithm: SchedulingAlgorithm? = nil) {
        self.taskID = taskID
        self.resources = resources
        self.nodeSelector = nodeSelector
        self.algorithm = algorithm
    }
}

/// How many nodes one filter removed: recorded with every decision, so an operator can see why a
/// task went where it went, or why it is still pending.
public struct FilterOutcome: Sendable, Hashable, Codable {
    public var filter: String
    public var removed: Int

    public init(filter: String, removed: Int) {
        self.filter = filter
        self.removed = removed
    }
}

/// The scheduler's answer for one task.
public enum PlacementDecision: Sendable, Hashable {
    /// Place on `node`; `score` is the algorithm's score of that node.
    case placed(node: String, score: Double, algorithm: SchedulingAlgorithm, filters: [FilterOutcome])
    /// No node can take the task now; `reason` says which filter left none.
    case unschedulable(reason: String, filters: [FilterOutcome])
}

/// Places tasks on nodes in two phases, as Nomad's and Kubernetes' schedulers do: filters remove
/// the nodes that cannot run the task (feasibility), then the algorithm scores the rest (ranking).
/// A value type with no clock and no randomness: the same inputs give the same decision, and ties
/// go to the smallest node id.
public struct Scheduler: Sendable {
    public var defaultAlgorithm: SchedulingAlgorithm
    public var filters: [any PlacementFilter]
    /// The node round-robin chose last; the next choice is the first feasible id after it.
    public private(set) var roundRobinLast: String?

    public init(defaultAlgorithm: SchedulingAlgorithm = .binPacking, filters: [any PlacementFilter] = Scheduler.standardFilters) {
        self.defaultAlgorithm = defaultAlgorithm
        self.filters = filters
    }

    /// Ready and schedulable, resources fit, node selector matches.
    public static let standardFilters: [any PlacementFilter] = [NodeReadyFilter(), ResourcesFitFilter(), NodeSelectorFilter()]

    /// Chooses a node for `request` among `nodes`.
    public mutating func place(_ request: PlacementRequest, on nodes: [NodeInfo]) -> PlacementDecision {
        var feasible = nodes
        var outcomes: [FilterOutcome] = []
        for filter in filters {
            let before = feasible.count
            feasible.removeAll { !filter.admits(request, $0) }
            outcomes.append(FilterOutcome(filter: filter.name, removed: before - feasible.count))
            if feasible.isEmpty {
                let reason = nodes.isEmpty
                    ? "no nodes in the cluster"
                    : "0/\(nodes.count) nodes available: \(outcomes.filter { $0.removed > 0 }.map { "\($0.removed) \($0.filter)" }.joined(separator: ", "))"
                return .unschedulable(reason: reason, filters: outcomes)
            }
        }
        let algorithm = request.algorithm ?? defaultAlgorithm
        let (node, score) = choose(request, among: feasible, algorithm: algorithm)
        if algorithm == .roundRobin { roundRobinLast = node.id }
        return .placed(node: node.id, score: score, algorithm: algorithm, filters: outcomes)
    }

    func choose(_ request: PlacementRequest, among feasible: [NodeInfo], algorithm: SchedulingAlgorithm) -> (NodeInfo, Double) {
        switch algorithm {
        case .roundRobin:
            // The first id after the last choice, wrapping around; stable across leader changes as
            // long as the cursor is carried over, and fair whatever the order nodes arrive in.
            let after = feasible.filter { roundRobinLast == nil || $0.id > roundRobinLast! }
            let pick = (after.isEmpty ? feasible : after).min { $0.id < $1.id }!
            return (pick, 0)
        case .binPacking:
            var best = feasible[0]
            var bestScore = Self.binPackingScore(request.resources, best)
            for node in feasible.dropFirst() {
                let s = Self.binPackingScore(request.resources, node)
                if s > bestScore || (s == bestScore && node.id < best.id) {
                    best = node
                    bestScore = s
                }
            }
            return (best, bestScore)
        case .spread:
            var best = feasible[0]
            var bestUtil = Self.utilisation(request.resources, best)
            for node in feasible.dropFirst() {
                let u = Self.utilisation(request.resources, node)
                let better = node.taskCount < best.taskCount
                    || (node.taskCount == best.taskCount && (u < bestUtil || (u == bestUtil && node.id < best.id)))
                if better {
                    best = node
                    bestUtil = u
                }
            }
            // Higher is better for every algorithm: fewer tasks first, then more room.
            return (best, -Double(best.taskCount) - bestUtil)
        }
    }

    /// 0.7 x cpu utilisation + 0.3 x memory utilisation of `node` once `request` is placed on it.
    public static func binPackingScore(_ request: Resources, _ node: NodeInfo) -> Double {
        let cpu = Double(node.allocated.cpu + request.cpu) / Double(max(node.capacity.cpu, 1))
        let memory = Double(node.allocated.memory + request.memory) / Double(max(node.capacity.memory, 1))
        return 0.7 * cpu + 0.3 * memory
    }

    /// The mean of cpu and memory utilisation after placing `request`.
    public static func utilisation(_ request: Resources, _ node: NodeInfo) -> Double {
        let cpu = Double(node.allocated.cpu + request.cpu) / Double(max(node.capacity.cpu, 1))
        let memory = Double(node.allocated.memory + request.memory) / Double(max(node.capacity.memory, 1))
        return (cpu + memory) / 2
    }
}
