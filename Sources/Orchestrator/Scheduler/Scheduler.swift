import ClusterModel

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
    public var filters: [PlacementFilter]
    /// The node round-robin chose last; the next choice is the first feasible id after it.
    public private(set) var roundRobinLast: String?
    /// Where `roundRobinLast` sat in the last node list: checked with one comparison, so that a
    /// round-robin decision over a list sorted by id needs no string ordering in its hot loop.
    private var roundRobinLastIndex = 0

    public init(defaultAlgorithm: SchedulingAlgorithm = .binPacking, filters: [PlacementFilter] = Scheduler.standardFilters) {
        self.defaultAlgorithm = defaultAlgorithm
        self.filters = filters
    }

    /// Ready and schedulable, resources fit, node selector matches.
    public static let standardFilters: [PlacementFilter] = [.nodeReady, .resourcesFit, .nodeSelector]

    /// Chooses a node for `request` among `nodes`, in one pass: each node runs the filters in
    /// order (the first that refuses it is charged with it) and, if feasible, is scored at once.
    /// Nothing is copied, which keeps a decision at 1,000 nodes in the tens of microseconds.
    public mutating func place(_ request: PlacementRequest, on nodes: [NodeInfo]) -> PlacementDecision {
        let algorithm = request.algorithm ?? defaultAlgorithm
        var removed = [Int](repeating: 0, count: filters.count)
        var ranking = Ranking(algorithm: algorithm, request: request.resources, roundRobinLast: roundRobinLast)
        if algorithm == .roundRobin, Self.isSortedByID(nodes) {
            ranking.lastPosition = position(after: roundRobinLast, in: nodes)
        }
        // Nodes are reached through a pointer: reading a field of `base[i]` copies nothing, where
        // passing the element copied it (its id and labels: a retain and a release each), and
        // that copying was half the time of a decision.
        let best: (index: Int, score: Double)? = nodes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return nil }
            for i in 0..<buffer.count {
                let node = base + i
                var feasible = true
                for f in filters.indices where !filters[f].admits(request, node) {
                    removed[f] += 1
                    feasible = false
                    break
                }
                if feasible { ranking.consider(node, i) }
            }
            return ranking.best
        }
        let outcomes = zip(filters, removed).map { FilterOutcome(filter: $0.name, removed: $1) }
        guard let best else {
            let reason = nodes.isEmpty
                ? "no nodes in the cluster"
                : "0/\(nodes.count) nodes available: \(outcomes.filter { $0.removed > 0 }.map { "\($0.removed) \($0.filter)" }.joined(separator: ", "))"
            return .unschedulable(reason: reason, filters: outcomes)
        }
        let chosen = nodes[best.index].id
        if algorithm == .roundRobin {
            roundRobinLast = chosen
            roundRobinLastIndex = best.index
        }
        return .placed(node: chosen, score: best.score, algorithm: algorithm, filters: outcomes)
    }

    /// Whether ids ascend through the list (the store lists nodes in key order, so they do).
    /// Checked at the ends and the middle only: a cheap guard, and the indexed round robin below
    /// stays correct for any list whose ids ascend, which is the only kind it is used on.
    static func isSortedByID(_ nodes: [NodeInfo]) -> Bool {
        guard nodes.count > 1 else { return true }
        let mid = nodes.count / 2
        return nodes[0].id <= nodes[mid].id && nodes[mid].id <= nodes[nodes.count - 1].id
    }

    /// The index of the last node whose id is at most `last` in an id-sorted list (-1: none).
    private func position(after last: String?, in nodes: [NodeInfo]) -> Int {
        guard let last else { return -1 }
        if roundRobinLastIndex < nodes.count, nodes[roundRobinLastIndex].id == last { return roundRobinLastIndex }
        var low = 0, high = nodes.count  // first index with id > last
        while low < high {
            let mid = (low + high) / 2
            if nodes[mid].id <= last { low = mid + 1 } else { high = mid }
        }
        return low - 1
    }

    /// 0.7 x cpu utilisation + 0.3 x memory utilisation of a node once `request` is placed on it.
    @inlinable
    public static func binPackingScore(_ request: Resources, allocated: Resources, capacity: Resources) -> Double {
        let cpu = Double(allocated.cpu + request.cpu) / Double(max(capacity.cpu, 1))
        let memory = Double(allocated.memory + request.memory) / Double(max(capacity.memory, 1))
        return 0.7 * cpu + 0.3 * memory
    }

    /// The mean of cpu and memory utilisation after placing `request`.
    @inlinable
    public static func utilisation(_ request: Resources, allocated: Resources, capacity: Resources) -> Double {
        let cpu = Double(allocated.cpu + request.cpu) / Double(max(capacity.cpu, 1))
        let memory = Double(allocated.memory + request.memory) / Double(max(capacity.memory, 1))
        return (cpu + memory) / 2
    }
}

/// The running best node of one decision, fed feasible nodes one at a time (by index, so that
/// no id is copied until the decision is made).
struct Ranking {
    let algorithm: SchedulingAlgorithm
    let request: Resources
    let roundRobinLast: String?
    private var bestIndex = -1
    private var bestKey = 0.0
    private var bestNode: UnsafePointer<NodeInfo>?
    /// Round robin: the feasible node with the smallest id, for when no id comes after the last
    /// choice (the first feasible index when the list is sorted by id).
    private var smallestIndex = -1
    private var smallestNode: UnsafePointer<NodeInfo>?
    /// Round robin over an id-sorted list: the index of the last choice (-1: none), so positions
    /// replace string comparisons; nil when the list is not sorted.
    var lastPosition: Int?

    init(algorithm: SchedulingAlgorithm, request: Resources, roundRobinLast: String?) {
        self.algorithm = algorithm
        self.request = request
        self.roundRobinLast = roundRobinLast
    }

    mutating func consider(_ node: UnsafePointer<NodeInfo>, _ i: Int) {
        switch algorithm {
        case .roundRobin:
            if let lastPosition {
                // Sorted by id: the first feasible index after the last choice, else the first
                // feasible index of all.
                if smallestIndex < 0 { smallestIndex = i }
                if bestIndex < 0 && i > lastPosition { bestIndex = i }
                return
            }
            // The first id after the last choice, wrapping around to the smallest: fair whatever
            // order nodes are listed in, and stable across leader changes if the cursor is kept.
            if smallestNode == nil || node.pointee.id < smallestNode!.pointee.id {
                smallestIndex = i
                smallestNode = node
            }
            if let last = roundRobinLast, node.pointee.id <= last { return }
            if bestNode == nil || node.pointee.id < bestNode!.pointee.id {
                bestIndex = i
                bestNode = node
            }
        case .binPacking:
            take(node, i, score: Scheduler.binPackingScore(request, allocated: node.pointee.allocated, capacity: node.pointee.capacity))
        case .spread:
            // Higher is better for every algorithm: fewer tasks first, then more room left.
            take(node, i, score: -Double(node.pointee.taskCount)
                    - Scheduler.utilisation(request, allocated: node.pointee.allocated, capacity: node.pointee.capacity))
        }
    }

    private mutating func take(_ node: UnsafePointer<NodeInfo>, _ i: Int, score: Double) {
        // Ids are compared only on a tie, which is rare outside empty clusters.
        if bestIndex < 0 || score > bestKey || (score == bestKey && node.pointee.id < bestNode!.pointee.id) {
            bestIndex = i
            bestKey = score
            bestNode = node
        }
    }

    /// The chosen index and its score, nil when no node was feasible. Round robin's score is 0.
    var best: (index: Int, score: Double)? {
        if algorithm == .roundRobin {
            if bestIndex >= 0 { return (bestIndex, 0) }
            return smallestIndex >= 0 ? (smallestIndex, 0) : nil
        }
        return bestIndex >= 0 ? (bestIndex, bestKey) : nil
    }
}
