#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RaftTestSupport
import Testing
import TestGate

/// Issue 15: a worker cut off from every master (a real partition: its connections to the masters
/// go through a `FaultProxy` that discards every byte, while the masters keep running and talking
/// to each other) stops its task within its lease, before the masters declare its node down and
/// start the task elsewhere; sampled every 50 ms, at most one copy of the task exists on the
/// machine at any moment. After healing, the worker rejoins and the task keeps running where it
/// moved.
@Suite(.serialized, .heavy) struct WorkerPartitionTests {
    @Test("a worker partitioned from all masters stops its task before it is started elsewhere; never two copies at once")
    func partitionedWorker() async throws {
        // Down after 6 s: heartbeats every 600 ms, a lease of 4.8 s.
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--node-not-ready-after", "2", "--node-down-after", "6"])
        let marker = "orch-wpart-\(UUID().uuidString.prefix(8))"
        let worker = 9  // the proxy's name for the partitioned worker's side of the links
        let base = try PortBlock.reserve(offsets: [0, 1, 2])
        let proxy = try FaultProxy(links: (0..<3).map { FaultProxy.Link(from: worker, to: $0, port: base + $0, target: cluster.rpcPorts[$0]) })
        defer {
            proxy.shutdown()
            cluster.killAll()
            HostProcesses.kill(matching: marker)
        }
        do {
            try cluster.start()
            _ = try await cluster.leaderIndex()
            try cluster.addWorker(name: "w1", masters: (0..<3).map { "127.0.0.1:\(base + $0)" })
            try await cluster.waitUntil("w1 ready") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let id = try await WorkerFencingTests.create(cluster, name: "one-copy", command: "sleep 300; : \(marker)", restart: "on-failure")
            try await cluster.waitUntil("the task running on w1") { try await WorkerFencingTests.task(cluster, id)["state"] as? String == "running" }
            let w1 = try #require(cluster.nodeID(ofWorker: "w1"))
            try cluster.addWorker(name: "w2")
            try await cluster.waitUntil("two ready nodes") {
                try await cluster.nodes(master: 0).filter { $0["state"] as? String == "ready" }.count == 2
            }
            let first = Set(HostProcesses.matching(marker).compactMap(HostProcesses.group(of:)))
            #expect(first.count == 1, "one copy before the partition: \(first)")

            proxy.isolate(worker)
            let cut = ContinuousClock.now
            var most = 0
            var gone: Duration?
            var movedAt: Duration?
            var task: [String: Any] = [:]
            // Sample the copies on the machine until the task runs elsewhere and a while after.
            let until = cut + .seconds(40)
            while ContinuousClock.now < until {
                let groups = Set(HostProcesses.matching(marker).compactMap(HostProcesses.group(of:)))
                most = max(most, groups.count)
                if gone == nil, groups.isDisjoint(with: first) { gone = cut.duration(to: .now) }
                if movedAt == nil {
                    task = try await WorkerFencingTests.task(cluster, id)
                    if task["state"] as? String == "running", task["node"] as? String != w1 { movedAt = cut.duration(to: .now) }
                } else if cut.duration(to: .now) > movedAt! + .seconds(2) {
                    break
                }
                try await Task.sleep(for: .milliseconds(50))  // the sampling interval, not a wait for a condition
            }
            print("partitioned worker: old copy gone after \(String(describing: gone)), task running elsewhere after \(String(describing: movedAt))")
            #expect(most <= 1, "two copies of the task existed at once")
            let stopped = try #require(gone, "the partitioned worker never stopped its copy")
            let moved = try #require(movedAt, "the task never ran elsewhere: \(task)")
            #expect(stopped < moved, "stopped (\(stopped)) before the new copy ran (\(moved))")
            #expect(stopped < .seconds(6), "stopped within the lease, before the node could be down: \(stopped)")

            // Heal: w1 comes back, says its copy was fenced (a stale report now), joins again.
            proxy.heal()
            try await cluster.waitUntil("w1 ready again", timeout: .seconds(30)) {
                try await cluster.nodes(master: 0).first { $0["id"] as? String == w1 }?["state"] as? String == "ready"
            }
            task = try await WorkerFencingTests.task(cluster, id)
            #expect(task["state"] as? String == "running" && task["node"] as? String != w1, "the task stays where it moved: \(task)")
            #expect(Set(HostProcesses.matching(marker).compactMap(HostProcesses.group(of:))).count == 1, "one copy after healing")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}
