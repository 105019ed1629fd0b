import Foundation
import Testing
import TestGate

/// Masters and workers run by an ordinary user, as a hardened install or the master image does.
@Suite(.serialized, .heavy) struct NonRootClusterTests {
    /// Regression (issue 20): every inbound connection set SO_DEBUG, which only root may, so the
    /// masters of a non-root user never elected a leader.
    @Test("3 masters and a worker as an ordinary user elect a leader and complete the seed's task submitted through a follower")
    func seedTaskThroughFollower() async throws {
        let user = try TestUser.ordinary()
        let cluster = try ClusterHarness(masters: 3, runAs: user)
        defer { cluster.killAll() }
        try cluster.start()
        do {
            let leader = try await cluster.leaderIndex()
            try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("a ready node") {
                try await cluster.nodes(master: leader).contains { $0["state"] as? String == "ready" }
            }
            let follower = (0..<3).first { $0 != leader }!
            let seed = #"{"name": "test-task", "image": "alpine", "command": ["echo", "hello world"], "resources": {"cpu": 500, "memory": 256}}"#
            let created = try await cluster.request(.POST, master: follower, "/api/v1/tasks", body: seed)
            #expect(created.status == 201, "\(created.body)")
            let id = try #require((created.json as? [String: Any])?["id"] as? String)
            try await cluster.waitUntil("the task completes") {
                let r = try await cluster.request(.GET, master: follower, "/api/v1/tasks/\(id)?consistent=true")
                return (r.json as? [String: Any])?["state"] as? String == "completed"
            }
            let logs = try await cluster.request(.GET, master: follower, "/api/v1/tasks/\(id)/logs")
            #expect(logs.status == 200 && logs.body.contains("hello world"), "\(logs.status) \(logs.body)")
            if let user {
                // The processes really ran as that user: the masters' data is theirs.
                let owner = try FileManager.default.attributesOfItem(atPath: cluster.root + "/m1/raft.sqlite")[.ownerAccountID] as? NSNumber
                #expect(owner?.uint32Value == user.uid)
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
    }
}
