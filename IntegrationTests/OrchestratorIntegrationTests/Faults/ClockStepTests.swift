import EtcdAPITestSupport
import EtcdProto
import Foundation
import GRPCNIOTransportHTTP2
import Testing
import TestGate

/// Issue 15: node health is judged on the leader's monotonic clock, so a master's wall clock
/// stepped (NTP, an operator, a resumed VM) does not mark healthy nodes down in bulk. Each master's
/// wall clock follows its own offset file (`WallClock`'s fault hook, `ORCH_FAULT_CLOCK_OFFSET_FILE`:
/// the machine's clock is shared by every test, so it stays alone); the test steps the leader's
/// clock an hour ahead and a follower's an hour back, with workers heartbeating to all of them.
/// An etcd-API lease lives through it too: leases are timed on a steady clock.
@Suite(.serialized, .heavy) struct ClockStepTests {
    @Test("stepping the leader's wall clock an hour ahead and a follower's an hour back marks no node down and loses no task")
    func wallClockSteps() async throws {
        let clocks = FileManager.default.temporaryDirectory.appendingPathComponent("orch-clock-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: clocks, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: clocks) }
        func offsetFile(_ i: Int) -> String { "\(clocks)/m\(i + 1)" }
        func step(_ i: Int, milliseconds: Int) throws { try "\(milliseconds)".write(toFile: offsetFile(i), atomically: true, encoding: .utf8) }
        var environment: [Int: [String: String]] = [:]
        for i in 0..<3 {
            try step(i, milliseconds: 0)
            environment[i] = ["ORCH_FAULT_CLOCK_OFFSET_FILE": offsetFile(i)]
        }
        // Down after 6 s: the observation window below is well past it.
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--node-not-ready-after", "2", "--node-down-after", "6"],
                                         masterEnvironment: environment)
        let marker = "orch-clock-\(UUID().uuidString.prefix(8))"
        defer {
            cluster.killAll()
            HostProcesses.kill(matching: marker)
        }
        do {
            try cluster.start()
            let leader = try await cluster.leaderIndex()
            let follower = (leader + 1) % 3
            for w in 1...2 { try cluster.addWorker(name: "w\(w)") }
            try await cluster.waitUntil("two ready nodes") {
                try await cluster.nodes(master: 0).filter { $0["state"] as? String == "ready" }.count == 2
            }
            var ids: [String] = []
            for n in 0..<4 { ids.append(try await WorkerFencingTests.create(cluster, name: "steady-\(n)", command: "sleep 300; : \(marker)")) }
            try await cluster.waitUntil("four tasks running") {
                try await cluster.tasks(master: 0).filter { $0["state"] as? String == "running" }.count == 4
            }

            // An etcd-API lease of 60 s: the leader's clock an hour ahead must not expire it.
            let security: HTTP2ClientTransport.Posix.TransportSecurity = cluster.tls ? TestTLS.clientMaterial.grpcClientSecurity() : .plaintext
            let etcd = try EtcdGRPCConnection(endpoint: "127.0.0.1:\(cluster.etcdPorts[leader])", security: security)
            defer { Task { await etcd.close() } }
            let lease = try await etcd.lease.leaseGrant(.with { $0.ttl = 60 }).id
            _ = try await etcd.kv.put(.with { $0.key = Data("leased".utf8); $0.value = Data("v".utf8); $0.lease = lease })

            try step(leader, milliseconds: 3_600_000)
            try step(follower, milliseconds: -3_600_000)
            // Watch for twice the down timeout: every node stays ready, every task keeps running.
            let until = ContinuousClock.now + .seconds(12)
            var samples = 0
            while ContinuousClock.now < until {
                let nodes = try await cluster.nodes(master: leader)
                #expect(nodes.count == 2 && nodes.allSatisfy { $0["state"] as? String == "ready" }, "after the steps: \(nodes)")
                let tasks = try await cluster.tasks(master: leader)
                #expect(tasks.allSatisfy { $0["state"] as? String == "running" && $0["retries"] as? Int == 0 }, "after the steps: \(tasks)")
                samples += 1
                try await Task.sleep(for: .milliseconds(250))  // a sampling interval, not a wait for a condition
            }
            #expect(samples >= 20)
            let ttl = try await etcd.lease.leaseTimeToLive(.with { $0.id = lease }).ttl
            #expect(ttl > 30 && ttl <= 60, "the lease keeps its time: \(ttl) s left")
            #expect(try await etcd.kv.range(.with { $0.key = Data("leased".utf8) }).kvs.count == 1, "its key is still there")
            // The cluster still works: a new task through the stepped follower runs.
            let r = try await cluster.request(.POST, master: follower, "/api/v1/tasks", body: ClusterIntegrationTests.taskBody("after-step", command: "true"))
            #expect(r.status == 201, "\(r.body)")
            let id = try #require((r.json as? [String: Any])?["id"] as? String)
            try await cluster.waitUntil("the new task completed") { try await WorkerFencingTests.task(cluster, id)["state"] as? String == "completed" }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}
