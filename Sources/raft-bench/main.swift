// Benchmarks of 3 `raft-node` processes on loopback over gRPC with SQLite logs.
//
// Usage (release build): swift build -c release --product raft-node --product raft-bench
//                        .build/release/raft-bench [throughput|failover|all] [--runs N] [--trials N]
//
// throughput: 64 concurrent proposers of 256-byte entries, then 1 proposer; committed entries/s,
//             p50/p99 latency, entries per disk sync; median over runs.
// failover:   kill -9 the leader, time until a survivor commits an entry; default timings
//             (100 ms ticks, election timeout 10 ticks), over several trials.

import Foundation
import RaftTestSupport

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : s[s.count / 2]
}

func fields(_ line: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for pair in line.split(separator: " ") {
        let kv = pair.split(separator: "=")
        if kv.count == 2, let v = Double(kv[1]) { out[String(kv[0])] = v }
    }
    return out
}

guard let binary = RaftProcessCluster.locateBinary() else {
    print("raft-node not found next to raft-bench; build it: swift build -c release --product raft-node")
    exit(2)
}

let args = Array(CommandLine.arguments.dropFirst())
let mode = args.first.map { $0.hasPrefix("--") ? "all" : $0 } ?? "all"
func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}
let runs = option("--runs", 3)
let trials = option("--trials", 10)

func throughput() async throws {
    print("== 3 raft-node processes, gRPC on 127.0.0.1, SQLite (WAL, synchronous=FULL), 256-byte entries")
    for (clients, perClient) in [(64, 400), (1, 2000)] {
        var results: [[String: Double]] = []
        for run in 1...runs {
            let cluster = try RaftProcessCluster(binary: binary)
            defer { cluster.stop() }
            try cluster.start()
            let leader = try await cluster.waitForLeader()
            // Warm up connections and the page cache.
            _ = try await leader.send("bench", "8 50 256", timeout: .seconds(60))
            let line = try await leader.send("bench", "\(clients) \(perClient) 256", timeout: .seconds(300))
            let f = fields(line)
            results.append(f)
            print("  run \(run): clients=\(clients) \(line)")
        }
        print(String(format: "clients=%d: median committed entries/s %.0f, p50 %.3f ms, p99 %.3f ms, entries/sync %.1f",
                     clients, median(results.map { $0["eps"] ?? 0 }), median(results.map { $0["p50_ms"] ?? 0 }),
                     median(results.map { $0["p99_ms"] ?? 0 }), median(results.map { $0["entries_per_sync"] ?? 0 })))
    }
}

func failover() async throws {
    print("== failover: kill -9 the leader, time until a survivor commits (default timings: 100 ms tick, election 10 ticks)")
    var times: [Double] = []
    let cluster = try RaftProcessCluster(binary: binary)
    defer { cluster.stop() }
    try cluster.start()
    for trial in 1...trials {
        let leader = try await cluster.waitForLeader(timeout: .seconds(30))
        _ = try await leader.send("propose", "warm-\(trial)")
        // Let every follower hear from this leader for a while, as in steady state.
        for n in cluster.nodes where n.id != leader.id {
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                if let s = try? await n.status(), s["leader"] == "\(leader.id)" { break }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        leader.kill9()
        let survivors = cluster.nodes.filter { $0.id != leader.id }
        var committed = false
        while !committed && start.duration(to: .now) < .seconds(30) {
            for s in survivors {
                if (try? await s.send("propose", "probe-\(trial)", timeout: .milliseconds(500))) != nil {
                    committed = true
                    break
                }
            }
            if !committed { try await Task.sleep(for: .milliseconds(2)) }
        }
        let ms = Double(start.duration(to: .now).components.attoseconds) / 1e15
            + Double(start.duration(to: .now).components.seconds) * 1000
        times.append(ms)
        print(String(format: "  trial %d: %.0f ms", trial, ms))
        try leader.start()
    }
    let sorted = times.sorted()
    print(String(format: "failover over %d trials: median %.0f ms, min %.0f ms, max %.0f ms",
                 times.count, median(times), sorted.first ?? 0, sorted.last ?? 0))
}

if mode == "throughput" || mode == "all" { try await throughput() }
if mode == "failover" || mode == "all" { try await failover() }
