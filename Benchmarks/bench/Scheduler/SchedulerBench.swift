// Scheduler decisions per second, the scheduler alone: 10,000 tasks onto 1,000 simulated nodes
// per algorithm, each placement updating the chosen node's allocation as the leader would.
//
// Usage: swift build -c release --product bench && .build/release/bench scheduler [--runs N]
import ArgumentParser
import BenchSupport
import ClusterModel
import Foundation
import Orchestrator

struct SchedulerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Decisions per second of the scheduler alone: 10,000 tasks onto 1,000 nodes."
    )

    @Option(help: "Runs per algorithm; the median is reported.")
    var runs = 5

    static let nodeCount = 1000, taskCount = 10_000

    static func makeNodes() -> [NodeInfo] {
        (0..<nodeCount).map { i in
            NodeInfo(id: String(format: "node-%04d", i), labels: ["zone": "z\(i % 3)"],
                     capacity: Resources(cpu: 16000 + (i % 4) * 4000, memory: 65536))
        }
    }

    func run() {
        let (nodeCount, taskCount) = (Self.nodeCount, Self.taskCount)
        print("== scheduler alone: \(taskCount) tasks onto \(nodeCount) nodes, \(runs) runs, median")
        for algorithm in SchedulingAlgorithm.allCases {
            var rates: [Double] = []
            var placed = 0
            for _ in 0..<runs {
                var nodes = Self.makeNodes()
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
                rates.append(Double(taskCount) / start.duration(to: .now).inSeconds)
            }
            rates.sort()
            print(String(format: "%@: median %.0f decisions/s (min %.0f, max %.0f), %d placed", algorithm.rawValue,
                         median(rates), rates.first!, rates.last!, placed))
        }
    }
}
