import Foundation
import Testing
import TestGate

/// `/readyz` as the load balancer in front of the masters sees it.
@Suite(.serialized, .heavy) struct ReadinessTests {
    /// A follower cut off from the others still knows the old leader until its election timeout
    /// (about a second): `/readyz` used to answer 200 then, because "a leader is known" was all it
    /// checked. Now it needs a ReadIndex round with the leader, which cannot complete.
    @Test("a follower cut off from the leader is not ready at once, though it still knows a leader; ready again when they are back")
    func cutOffFollowerIsNotReady() async throws {
        let cluster = try ClusterHarness(masters: 3)
        defer { cluster.killAll() }
        try cluster.start()
        do {
            let leader = try await cluster.leaderIndex()
            let follower = (0..<3).first { $0 != leader }!
            try await cluster.waitUntil("the follower ready") {
                try await cluster.request(.GET, master: follower, "/readyz").status == 200
            }
            let others = (0..<3).filter { $0 != follower }
            for i in others { cluster.masters[i].signal(SIGSTOP) }
            defer { for i in others { cluster.masters[i].signal(SIGCONT) } }
            // Asked at once: the follower heard from the leader less than a heartbeat ago.
            let view = try await cluster.request(.GET, master: follower, "/api/v1/cluster")
            let ready = try await cluster.request(.GET, master: follower, "/readyz")
            #expect(ready.status == 503, "\(ready.status) \(ready.body); cluster view: \(view.body)")
            #expect(ready.body.contains("not_ready"), "\(ready.body)")

            for i in others { cluster.masters[i].signal(SIGCONT) }
            try await cluster.waitUntil("the follower ready again") {
                try await cluster.request(.GET, master: follower, "/readyz").status == 200
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
    }
}
