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
