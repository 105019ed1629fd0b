import ClusterModel
import Testing
@testable import Orchestrator

func node(_ id: String, cpu: Int = 4000, memory: Int = 8192, usedCPU: Int = 0, usedMemory: Int = 0,
                 tasks: Int = 0, state: NodeState = .ready, schedulable: Bool = true,
                 labels: [String: String] = [:]) -> NodeInfo {
    NodeInfo(id: id, state: state, schedulable: schedulable, labels: labels,
             capacity: Resources(cpu: cpu, memory: memory),
             allocated: Resources(cpu: usedCPU, memory: usedMemory), taskCount: tasks)
}

func request(cpu: Int = 500, memory: Int = 256, selector: [String: String] = [:],
                    algorithm: SchedulingAlgorithm? = nil) -> PlacementRequest {
    PlacementRequest(taskID: "t", resources: Resources(cpu: cpu, memory: memory), nodeSelector: selector, algorithm: algorithm)
}

/// Table-driven scheduler tests; the arithmetic behind each expectation is in the comments.
@Suite struct SchedulerTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var nodes: [NodeInfo]
        var request: PlacementRequest
        var expected: String?
        var testDescription: String { name }
    }

    static let binPackingCases: [Case] = [
        // a: cpu (1000+500)/4000 = 0.375, mem (1024+256)/8192 = 0.15625 -> 0.7*0.375 + 0.3*0.15625 = 0.309375
        // b: cpu (3000+500)/4000 = 0.875, mem (1024+256)/8192 = 0.15625 -> 0.6125 + 0.046875   = 0.659375
        Case(name: "the fuller node wins", nodes: [node("a", usedCPU: 1000, usedMemory: 1024), node("b", usedCPU: 3000, usedMemory: 1024)],
             request: request(), expected: "b"),
        // b would be (3600+500)/4000 = 1.025 > 1: filtered out; a is the only fit.
        Case(name: "a node the task does not fit in is skipped", nodes: [node("a", usedCPU: 1000), node("b", usedCPU: 3600)],
             request: request(), expected: "a"),
        // cpu weighs 0.7: a: 0.7*(2500/4000) + 0.3*(256/8192) = 0.4375 + 0.009375 = 0.446875
        //                 b: 0.7*(500/4000) + 0.3*(6400/8192) = 0.0875 + 0.234375 = 0.321875
        Case(name: "cpu utilisation weighs more than memory", nodes: [node("a", usedCPU: 2000), node("b", usedMemory: 6144)],
             request: request(), expected: "a"),
        // Equal scores: the smaller id wins.
        Case(name: "ties go to the smallest id", nodes: [node("c"), node("a"), node("b")], request: request(), expected: "a"),
        // Small node: cpu 1500/2000 = 0.75 -> 0.525 + 0.3*(256/2048 = 0.125) = 0.5625; big: 0.7*(500/8000) + ... = 0.04375 + 0.0046875
        Case(name: "a small node fills before a big empty one",
             nodes: [node("big", cpu: 8000, memory: 16384), node("small", cpu: 2000, memory: 2048, usedCPU: 1000)],
             request: request(), expected: "small"),
    ]

    @Test("bin packing: 0.7 x cpu + 0.3 x memory utilisation after placing, highest wins", arguments: binPackingCases)
    func binPacking(_ c: Case) {
        var s = Scheduler(defaultAlgorithm: .binPacking)
        #expect(s.place(c.request, on: c.nodes).node == c.expected)
    }

    static let spreadCases: [Case] = [
        Case(name: "the node with the fewest tasks wins", nodes: [node("a", tasks: 3), node("b", tasks: 1), node("c", tasks: 2)],
             request: request(), expected: "b"),
        // Same task count: a's mean utilisation ((2500/4000) + (256/8192))/2 = 0.328125 vs b's (500/4000 + 256/8192)/2 = 0.078125.
        Case(name: "equal counts: the least utilised wins", nodes: [node("a", usedCPU: 2000, tasks: 1), node("b", tasks: 1)],
             request: request(), expected: "b"),
        Case(name: "ties go to the smallest id", nodes: [node("b"), node("a")], request: request(), expected: "a"),
    ]

    @Test("spread: fewest tasks, then lowest utilisation", arguments: spreadCases)
    func spread(_ c: Case) {
        var s = Scheduler(defaultAlgorithm: .spread)
        #expect(s.place(c.request, on: c.nodes).node == c.expected)
    }

    @Test("round robin: feasible nodes in id order, wrapping, skipping the infeasible")
    func roundRobin() {
        var s = Scheduler(defaultAlgorithm: .roundRobin)
        let nodes = [node("c"), node("a"), node("b", state: .draining), node("d")]
        let picks = (0..<5).map { _ in s.place(request(), on: nodes).node }
        // b is draining: a, c, d, then around again.
        #expect(picks == ["a", "c", "d", "a", "c"])
    }

    @Test("a task's own algorithm overrides the cluster default")
    func perTaskAlgorithm() {
        var s = Scheduler(defaultAlgorithm: .binPacking)
        let nodes = [node("a", usedCPU: 3000, tasks: 5), node("b", tasks: 0)]
        #expect(s.place(request(), on: nodes).node == "a")
        #expect(s.place(request(algorithm: .spread), on: nodes).node == "b")
    }

    static let filterCases: [(String, NodeInfo, PlacementRequest, Bool)] = [
        ("ready node", node("n"), request(), true),
        ("not ready", node("n", state: .notReady), request(), false),
        ("down", node("n", state: .down), request(), false),
        ("draining", node("n", state: .draining), request(), false),
        ("cordoned", node("n", schedulable: false), request(), false),
        // 3500 + 500 = 4000 <= 4000: exactly full still fits.
        ("exactly fits", node("n", usedCPU: 3500, usedMemory: 7936), request(), true),
        // 3501 + 500 = 4001 > 4000.
        ("one millicore short", node("n", usedCPU: 3501), request(), false),
        // 7937 + 256 = 8193 > 8192.
        ("one megabyte short", node("n", usedMemory: 7937), request(), false),
        ("selector matches", node("n", labels: ["zone": "a", "disk": "ssd"]), request(selector: ["disk": "ssd"]), true),
        ("selector value differs", node("n", labels: ["disk": "hdd"]), request(selector: ["disk": "ssd"]), false),
        ("selector label missing", node("n"), request(selector: ["disk": "ssd"]), false),
    ]

    @Test("filters", arguments: 0..<filterCases.count)
    func filters(_ i: Int) {
        let (name, n, r, admitted) = Self.filterCases[i]
        var s = Scheduler()
        #expect((s.place(r, on: [n]).node != nil) == admitted, "\(name)")
    }

    @Test("an unschedulable task says which filters removed how many nodes")
    func unschedulableReason() {
        var s = Scheduler()
        let nodes = [node("a", state: .down), node("b", usedCPU: 4000), node("c", usedCPU: 3900), node("d", labels: ["gpu": "no"])]
        let decision = s.place(request(selector: ["gpu": "yes"]), on: nodes)
        guard case .unschedulable(let reason, let filters) = decision else {
            Issue.record("expected unschedulable, got \(decision)")
            return
        }
        #expect(filters == [FilterOutcome(filter: "node-not-ready", removed: 1),
                            FilterOutcome(filter: "insufficient-resources", removed: 2),
                            FilterOutcome(filter: "node-selector-mismatch", removed: 1)])
        #expect(reason == "0/4 nodes available: 1 node-not-ready, 2 insufficient-resources, 1 node-selector-mismatch")
        #expect(Scheduler().placeEmpty() == "no nodes in the cluster")
    }

    @Test("a placed task records the chosen node's score and the filters")
    func placementRecord() {
        var s = Scheduler(defaultAlgorithm: .binPacking)
        let decision = s.place(request(), on: [node("a"), node("b", state: .down)])
        guard case .placed(let chosen, let score, let algorithm, let filters) = decision else {
            Issue.record("expected a placement, got \(decision)")
            return
        }
        #expect(chosen == "a" && algorithm == .binPacking)
        // a: 0.7 * 500/4000 + 0.3 * 256/8192 = 0.0875 + 0.009375 = 0.096875
        #expect(abs(score - 0.096875) < 1e-12)
        #expect(filters == [
            FilterOutcome(filter: "node-not-ready", removed: 1),
            FilterOutcome(filter: "insufficient-resources", removed: 0),
            FilterOutcome(filter: "node-selector-mismatch", removed: 0),
        ])
    }
}

extension PlacementDecision {
    var node: String? {
        if case .placed(let node, _, _, _) = self { return node }
        return nil
    }
}

extension Scheduler {
    func placeEmpty() -> String? {
        var s = self
        if case .unschedulable(let reason, _) = s.place(PlacementRequest(taskID: "t", resources: .zero), on: []) { return reason }
        return nil
    }

    @Test("round robin over an id-sorted list (positions) chooses exactly as over an unsorted one (id comparisons)")
    func roundRobinIndexedMatchesCompared() {
        // 12 nodes; every third is cordoned, so the cursor must skip over infeasible ids.
        let sorted = (0..<12).map { i in
            NodeInfo(id: String(format: "n%02d", i), schedulable: i % 3 != 0, capacity: Resources(cpu: 100_000, memory: 100_000))
        }
        let unsorted = sorted.reversed() + []
        #expect(Scheduler.isSortedByID(sorted) && !Scheduler.isSortedByID(unsorted))
        var a = Scheduler(defaultAlgorithm: .roundRobin), b = Scheduler(defaultAlgorithm: .roundRobin)
        var choicesA: [String] = [], choicesB: [String] = []
        for k in 0..<30 {
            let request = PlacementRequest(taskID: "t\(k)", resources: Resources(cpu: 1, memory: 1))
            if case .placed(let node, _, _, _) = a.place(request, on: sorted) { choicesA.append(node) }
            if case .placed(let node, _, _, _) = b.place(request, on: unsorted) { choicesB.append(node) }
        }
        #expect(choicesA == choicesB)
        // 8 feasible nodes in id order, then around again.
        #expect(Array(choicesA.prefix(9)) == ["n01", "n02", "n04", "n05", "n07", "n08", "n10", "n11", "n01"])
    }
}
