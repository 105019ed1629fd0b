import Foundation
import Testing
import TestGate

/// Issue 15: a drain never starts the new copy of a task while the old one may still run. The
/// task takes a lock (a directory only one copy can create) and needs a second to let go of it
/// when stopped, so a new copy started before the old one ended finds the lock taken and says so.
@Suite(.serialized, .heavy) struct DrainHandoverTests {
    @Test("draining a node moves its running task to another node only after the old copy stopped, with no restart counted")
    func drainWaitsForTheStop() async throws {
        let cluster = try ClusterHarness(masters: 3)
        let marker = "orch-drain-\(UUID().uuidString.prefix(8))"
        defer {
            cluster.killAll()
            HostProcesses.kill(matching: marker)
        }
        do {
            try cluster.start()
            _ = try await cluster.leaderIndex()
            try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("w1 ready") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let lock = cluster.root + "/lock", marks = cluster.root + "/marks"
            let command = """
                mkdir \(lock) || { echo overlap >> \(marks); exit 99; }; echo start >> \(marks); \
                trap 'sleep 1; echo stop >> \(marks); rmdir \(lock); exit 0' TERM; sleep 300 & wait; : \(marker)
                """
            let id = try await WorkerFencingTests.create(cluster, name: "exclusive", command: command)
            try await cluster.waitUntil("the task running on w1") { try await WorkerFencingTests.task(cluster, id)["state"] as? String == "running" }
            let w1 = try #require(cluster.nodeID(ofWorker: "w1"))

            try cluster.addWorker(name: "w2")
            try await cluster.waitUntil("two ready nodes") {
                try await cluster.nodes(master: 0).filter { $0["state"] as? String == "ready" }.count == 2
            }
            let drain = try await cluster.request(.POST, master: 1, "/api/v1/nodes/\(w1)/drain")
            #expect(drain.status == 200, "\(drain.body)")

            var task: [String: Any] = [:]
            try await cluster.waitUntil("the task running on the other node", timeout: .seconds(40)) {
                task = try await WorkerFencingTests.task(cluster, id)
                return task["state"] as? String == "running" && task["node"] as? String != w1
            }
            let lines = ((try? String(contentsOfFile: marks, encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(lines == ["start", "stop", "start"], "the new copy started only after the old one let go of the lock: \(lines)")
            #expect(task["retries"] as? Int == 0, "a move is not a restart: \(task)")
            let node = try await cluster.nodes(master: 2).first { $0["id"] as? String == w1 }
            #expect(node?["state"] as? String == "draining")
            #expect(node?["task_count"] as? Int == 0, "the drained node holds nothing: \(String(describing: node))")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}
