// Benchmarks of 3 `raft-node` processes on loopback over gRPC with SQLite logs.
//
// Usage (release build): for p in raft-node bench; do swift build -c release --product $p; done
//                        .build/release/bench raft [throughput|failover|all] [--runs N] [--trials N] [--tls]
//
// throughput: 64 concurrent proposers of 256-byte entries, then 1 proposer; committed entries/s,
//             p50/p99 latency, entries per disk sync; median over runs.
// failover:   kill -9 the leader, time until a survivor commits an entry; default timings
//             (100 ms ticks, election timeout 10 ticks), over several trials.
import ArgumentParser
import BenchSupport
import ClusterSecurity
import Foundation
import RaftTestSupport

struct RaftBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Throughput, latency and failover of 3 raft-node processes (gRPC, SQLite)."
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case throughput, failover, all
    }

    @Argument(help: "What to measure.")
    var mode: Mode = .all
    @Option(help: "Throughput runs per client count; the median is reported.")
    var runs = 3
    @Option(help: "Failover trials.")
    var trials = 10
    @Flag(help: "Mutual TLS between the nodes, as between masters.")
    var tls = false

    /// `raft-node` arguments shared by every cluster of this invocation (the TLS directory).
    private var nodeArguments: [String] = []

    mutating func run() async throws {
        guard let binary = RaftProcessCluster.locateBinary() else {
            print("raft-node not found next to bench; build it: swift build -c release --product raft-node")
            throw ExitCode(2)
        }
        if tls {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-raft-tls-\(UUID().uuidString)").path
            let masters = try (1...3).map { CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m\($0)")) }
            _ = try TLSInit(directory: directory, requests: masters).run()
            nodeArguments = ["--tls-dir", directory]
            print("== mutual TLS between the nodes (material in \(directory))")
        }
        defer { if let directory = nodeArguments.last, tls { try? FileManager.default.removeItem(atPath: directory) } }
        if mode == .throughput || mode == .all { try await throughput(binary: binary) }
        if mode == .failover || mode == .all { try await failover(binary: binary) }
    }

    /// The `key=value` numbers of a `raft-node` bench answer.
    static func fields(_ line: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for pair in line.split(separator: " ") {
            let kv = pair.split(separator: "=")
            if kv.count == 2, let v = Double(kv[1]) { out[String(kv[0])] = v }
        }
        return out
    }

    func throughput(binary: URL) async throws {
        print("== 3 raft-node processes, gRPC on 127.0.0.1, SQLite (WAL, synchronous=FULL), 256-byte entries")
        for (clients, perClient) in [(64, 400), (1, 2000)] {
            var results: [[String: Double]] = []
            for run in 1...runs {
                let cluster = try RaftProcessCluster(binary: binary, extraArgs: nodeArguments)
                defer { cluster.stop() }
                try cluster.start()
                let leader = try await cluster.waitForLeader()
                // Warm up connections and the page cache.
                _ = try await leader.send("bench", "8 50 256", timeout: .seconds(60))
                let line = try await leader.send("bench", "\(clients) \(perClient) 256", timeout: .seconds(300))
                let f = Self.fields(line)
                results.append(f)
                print("  run \(run): clients=\(clients) \(line)")
            }
            print(String(format: "clients=%d: median committed entries/s %.0f, p50 %.3f ms, p99 %.3f ms, entries/sync %.1f",
                         clients, median(results.map { $0["eps"] ?? 0 }), median(results.map { $0["p50_ms"] ?? 0 }),
                         median(results.map { $0["p99_ms"] ?? 0 }), median(results.map { $0["entries_per_sync"] ?? 0 })))
        }
    }

    func failover(binary: URL) async throws {
        print("== failover: kill -9 the leader, time until a survivor commits (default timings: 100 ms tick, election 10 ticks)")
        var times: [Double] = []
        let cluster = try RaftProcessCluster(binary: binary, extraArgs: nodeArguments)
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
            let ms = start.duration(to: .now).inMilliseconds
            times.append(ms)
            print(String(format: "  trial %d: %.0f ms", trial, ms))
            try leader.start()
        }
        let sorted = times.sorted()
        print(String(format: "failover over %d trials: median %.0f ms, min %.0f ms, max %.0f ms",
                     times.count, median(times), sorted.first ?? 0, sorted.last ?? 0))
    }
}
