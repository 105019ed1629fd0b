import ClusterModel
import Testing
@testable import Orchestrator

@Suite struct HealthPolicyTests {
    static func node(lastHeartbeat: Int64, state: NodeState = .ready) -> NodeRecord {
        NodeRecord(info: NodeInfo(id: "n", state: state, capacity: Resources(cpu: 1000, memory: 1000)),
                   address: "", lastHeartbeat: lastHeartbeat)
    }

    // Leader since t = 0, grace 15 s, so from t = 15 s on only heartbeats count.
    static let cases: [(Int64, Int64, NodeState, NodeState)] = [
        // (last heartbeat, now, stored state, expected)
        (100_000, 104_999, .ready, .ready),       // 4.999 s of silence
        (100_000, 105_000, .ready, .notReady),    // 5 s: not ready
        (100_000, 114_999, .ready, .notReady),
        (100_000, 115_000, .ready, .down),        // 15 s: down
        (100_000, 101_000, .draining, .draining), // draining stays draining
        (100_000, 115_000, .draining, .down),     // ... until it goes down
        (100_000, 101_000, .down, .ready),        // a heartbeat brings a down node back
    ]

    @Test("not ready after 5 s of silence, down after 15 s", arguments: 0..<cases.count)
    func thresholds(_ i: Int) {
        let (last, now, stored, expected) = Self.cases[i]
        #expect(HealthPolicy().state(of: Self.node(lastHeartbeat: last, state: stored), now: now, leaderSince: 0) == expected)
    }

    @Test("after a leader change every node gets a grace period")
    func leaderGrace() {
        let policy = HealthPolicy()
        // The new leader (since t = 1,000,000) never saw this node's heartbeats: last recorded long ago.
        let n = Self.node(lastHeartbeat: 0)
        #expect(policy.state(of: n, now: 1_000_000, leaderSince: 1_000_000) == .ready)
        #expect(policy.state(of: n, now: 1_014_999, leaderSince: 1_000_000) == .notReady)  // grace counts as a heartbeat at 1,000,000
        #expect(policy.state(of: n, now: 1_015_000, leaderSince: 1_000_000) == .down)
    }
}

@Suite struct RestartPolicyTests {
    @Test("conditions")
    func conditions() {
        #expect(RestartPolicy(condition: .never).decide(after: .failed, retries: 0, jitter: 0) == .stop(reason: "restart policy never"))
        #expect(RestartPolicy(condition: .onFailure).decide(after: .completed, retries: 0, jitter: 0) == .stop(reason: "restart policy on-failure"))
        #expect(RestartPolicy(condition: .onFailure).decide(after: .lost, retries: 0, jitter: 0) == .restart(delay: 1000))
        #expect(RestartPolicy(condition: .always).decide(after: .completed, retries: 0, jitter: 0) == .restart(delay: 1000))
    }

    @Test("exponential backoff, capped, with at most a quarter of jitter; retries bounded")
    func backoff() {
        let p = RestartPolicy(condition: .onFailure, maxRetries: 10, backoffMs: 1000, maxBackoffMs: 8000)
        // 1000 << retries: 1000, 2000, 4000, 8000, then capped at 8000.
        let delays = (0..<6).map { p.decide(after: .failed, retries: $0, jitter: 0) }
        #expect(delays == [.restart(delay: 1000), .restart(delay: 2000), .restart(delay: 4000),
                           .restart(delay: 8000), .restart(delay: 8000), .restart(delay: 8000)])
        // Jitter 0.5 takes off 0.5 * 25% = 12.5%: 4000 - 500 = 3500.
        #expect(p.decide(after: .failed, retries: 2, jitter: 0.5) == .restart(delay: 3500))
        #expect(p.decide(after: .failed, retries: 10, jitter: 0) == .stop(reason: "gave up after 10 restarts (max_retries 10)"))
    }
}
