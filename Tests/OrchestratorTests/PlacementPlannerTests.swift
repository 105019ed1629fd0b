import ClusterModel
import Testing
@testable import Orchestrator

/// The scheduling pass's rules with no store: batches, over-commit, the unschedulable memo,
/// re-planning after a conflict and the rate of reason writes.
@Suite struct PlacementPlannerTests {
    static func nodes(_ count: Int, cpu: Int = 4000, schedulable: Bool = true) -> [NodeInfo] {
        (1...count).map { NodeInfo(id: "n\($0)", schedulable: schedulable, capacity: Resources(cpu: cpu, memory: 8192)) }
    }

    static func tasks(_ count: Int, cpu: Int = 500, reason: String = "", updatedAt: Int64 = 0) -> [TaskRecord] {
        (0..<count).map { i in
            var t = TaskRecord(id: "t\(i)", spec: TaskSpec(name: "t\(i)", image: "alpine", resources: Resources(cpu: cpu, memory: 256)), now: Int64(i))
            t.reason = reason
            t.updatedAt = updatedAt
            return t
        }
    }

    struct BatchCase: Sendable, CustomTestStringConvertible {
        var tasks: Int, nodes: Int, batchSize: Int, maxWrites: Int, algorithm: SchedulingAlgorithm
        var sizes: [Int], unschedulable: Int
        var testDescription: String { "\(tasks) tasks on \(nodes) nodes, batch \(batchSize), \(maxWrites) writes, \(algorithm): \(sizes)" }
    }

    static let batchCases: [BatchCase] = [
        // 8 of 10 fit on one node (8 x 500 = 4,000); batches of 3: 3 + 3 + 2.
        BatchCase(tasks: 10, nodes: 1, batchSize: 3, maxWrites: 128, algorithm: .binPacking, sizes: [3, 3, 2], unschedulable: 2),
        // Spread puts each on its own node: 3 tasks + 3 nodes = 6 writes, a 4th would bring 8.
        BatchCase(tasks: 10, nodes: 10, batchSize: 120, maxWrites: 6, algorithm: .spread, sizes: [3, 3, 3, 1], unschedulable: 0),
        // Bin packing puts 8 on a node before the next: 120 tasks would be 120 + 15 = 135 writes.
        // The batch closes once the next task could bring one node too many: at 113 tasks on 15
        // nodes (113 + 15 = 128 writes); the other 17 follow.
        BatchCase(tasks: 130, nodes: 17, batchSize: 120, maxWrites: 128, algorithm: .binPacking, sizes: [113, 17], unschedulable: 0),
        // 24 slots (3 x 8) for 30 tasks: over-commit never; 6 wait.
        BatchCase(tasks: 30, nodes: 3, batchSize: 120, maxWrites: 128, algorithm: .binPacking, sizes: [24], unschedulable: 6),
    ]

    @Test("batches close at batchSize or before the transaction's write limit; nodes are never over-committed", arguments: batchCases)
    func batches(_ c: BatchCase) {
        var limits = PlanLimits(batchSize: c.batchSize)
        limits.maxWritesPerTxn = c.maxWrites
        var scheduler = Scheduler(defaultAlgorithm: c.algorithm)
        let (batches, planner) = PlacementPlanner.plan(pending: Self.tasks(c.tasks), nodes: Self.nodes(c.nodes), now: 100,
                                                       limits: limits, scheduler: &scheduler)
        #expect(batches.map(\.count) == c.sizes)
        #expect(planner.unschedulable == c.unschedulable)
        for batch in batches {
            #expect(batch.count + Set(batch.map(\.record.node)).count <= c.maxWrites)
        }
        for node in planner.view {
            #expect(node.allocated.fits(in: node.capacity), "\(node.id) over-committed")
        }
        let placed = batches.flatMap { $0 }
        #expect(Set(placed.map(\.task.id)).count == placed.count, "a task placed twice")
        // Oldest first: the ones left waiting are the newest.
        #expect(placed.map(\.task.id) == Self.tasks(placed.count).map(\.id))
    }

    @Test("after a conflict the planner decides the batch again against the nodes as they are now")
    func replanAfterConflict() {
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        var planner = PlacementPlanner(pending: Self.tasks(4), nodes: Self.nodes(2, cpu: 1000), now: 0)
        let first = planner.nextBatch(using: &scheduler)
        // 2 tasks per node: bin packing fills n1, then n2.
        #expect(first.map(\.record.node) == ["n1", "n1", "n2", "n2"])
        // The commit was refused: n1 was cordoned meanwhile, n2 is as it was.
        planner.reset(nodes: [NodeInfo(id: "n1", schedulable: false, capacity: Resources(cpu: 1000, memory: 8192)),
                              NodeInfo(id: "n2", capacity: Resources(cpu: 1000, memory: 8192))])
        let again = planner.replan(first.map(\.task), using: &scheduler)
        #expect(again.map(\.record.node) == ["n2", "n2"])
        #expect(again.map(\.task.id) == ["t0", "t1"])
        #expect(planner.unschedulable == 2)
    }

    struct ReasonCase: Sendable, CustomTestStringConvertible {
        var oldReason: String, updatedAt: Int64, now: Int64, placedAny: Bool, maxUpdates: Int
        var written: Int
        var testDescription: String { "reason '\(oldReason)' from \(updatedAt), now \(now), placed \(placedAny): \(written) writes" }
    }

    static let reasonCases: [ReasonCase] = [
        ReasonCase(oldReason: "", updatedAt: 0, now: 1_000, placedAny: false, maxUpdates: 500, written: 20),   // missing: always written
        ReasonCase(oldReason: "", updatedAt: 0, now: 1_000, placedAny: true, maxUpdates: 500, written: 20),    // ... even while placing
        ReasonCase(oldReason: "", updatedAt: 0, now: 1_000, placedAny: false, maxUpdates: 7, written: 7),      // at most maxReasonUpdates
        ReasonCase(oldReason: "old", updatedAt: 0, now: 4_999, placedAny: false, maxUpdates: 500, written: 0), // stale, too soon
        ReasonCase(oldReason: "old", updatedAt: 0, now: 5_000, placedAny: false, maxUpdates: 500, written: 20),// stale, refreshed
        ReasonCase(oldReason: "old", updatedAt: 0, now: 5_000, placedAny: true, maxUpdates: 500, written: 0),  // not while placing
    ]

    @Test("a backlog's reasons: missing ones written, stale ones refreshed only after reasonRefreshMs and only when nothing was placed", arguments: reasonCases)
    func reasons(_ c: ReasonCase) {
        var limits = PlanLimits()
        limits.maxReasonUpdates = c.maxUpdates
        var scheduler = Scheduler()
        // 500 millicores fit nowhere on 400-millicore nodes.
        let (batches, planner) = PlacementPlanner.plan(pending: Self.tasks(20, reason: c.oldReason, updatedAt: c.updatedAt),
                                                       nodes: Self.nodes(2, cpu: 400), now: c.now, limits: limits, scheduler: &scheduler)
        #expect(batches.isEmpty && planner.unschedulable == 20)
        let updates = planner.reasonUpdates(placedAny: c.placedAny)
        #expect(updates.count == c.written)
        #expect(updates.allSatisfy { $0.reason == "0/2 nodes available: 2 insufficient-resources" && $0.updatedAt == c.now })
    }

    @Test("a request that fitted nowhere is not tried on every node again until the view is reset")
    func unschedulableMemo() {
        var scheduler = Scheduler()
        var planner = PlacementPlanner(pending: Self.tasks(3, cpu: 5000), nodes: Self.nodes(1), now: 0)
        #expect(planner.nextBatch(using: &scheduler).isEmpty)
        #expect(planner.unschedulable == 3)
        // A bigger node appears: after a reset the same request is decided afresh.
        planner.reset(nodes: [NodeInfo(id: "n9", capacity: Resources(cpu: 8000, memory: 8192))])
        #expect(planner.replan(Self.tasks(1, cpu: 5000), using: &scheduler).map(\.record.node) == ["n9"])
    }
}
