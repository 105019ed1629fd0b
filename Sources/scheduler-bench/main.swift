// Scheduler decisions per second, the scheduler alone: 10,000 tasks onto 1,000 simulated nodes
// per algorithm, each placement updating the chosen node's allocation as the leader would.
//
// Usage: swift build -c release --product scheduler-bench && .build/release/scheduler-bench [--runs N]

import ClusterModel
import Foundation
import Orchestrator

let args = CommandLine.arguments
let runs = args.firstIndex(of: "--runs").flatMap { Int(args[$0 + 1]) } ?? 5
let nodeCount = 1000, taskCount = 10_000

func makeNodes() -> [NodeInfo] {
    (0..<nodeCount).map { i in
        NodeInfo(id: String(format: "node-%04d", i), labels: ["zone": "z\(i % 3)"],
                 capacity: Resources(cpu: 16000 + (i % 4) * 4000, memory: 65536))
    }
}

print("== scheduler alone: \(taskCount) tasks onto \(nodeCount) nodes, \(runs) runs, median")
for algorithm in SchedulingAlgorithm.allCases {
    var rates: [Double] = []
    var placed = 0
    for _ in 0..<runs {
        var nodes = makeNodes()
        var index: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { index[n.id] = i }
        var scheduler = Scheduler(defaultAlgorithm: algorithm)
        placed = 0
        let start = ContinuousClock.now
        for t in 0..<taskCount {
            let request = PlacementRequest(taskID: "t\(t)", resources: Resources(cpu: 250 + (t % 4) * 250, memory: 256 + (t % 8) * 128),
                                           nodeSelector: t % 10 == 0 ? ["zone": "z1"] : [:])
            if case .placed(let node, _, _, _) = scheduler.place(request, on: nodes) {
                let i = index[node]!
                nodes[i].allocated = nodes[i].allocated + request.resources
                nodes[i].taskCount += 1
                placed += 1
            }
        }
        let d = start.duration(to: .now).components
        rates.append(Double(taskCount) / (Double(d.seconds) + Double(d.attoseconds) / 1e18))
    }
    rates.sort()
    print(String(format: "%@: median %.0f decisions/s (min %.0f, max %.0f), %d placed", algorithm.rawValue,
                 rates[rates.count / 2], rates.first!, rates.last!, placed))
}
