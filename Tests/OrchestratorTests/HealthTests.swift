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

    // (--node-down-after ms, heartbeat interval ms, worker lease ms): the interval is 1 s or a
    // tenth of down-after when shorter (100 ms at least); the lease is down-after minus two
    // intervals.
    static let leases: [(Int64, Int64, Int64)] = [
        (15_000, 1_000, 13_000),   // the defaults: 15 - 2 x 1
        (12_000, 1_000, 10_000),
        (60_000, 1_000, 58_000),
        (3_000, 300, 2_400),       // short test timings: 3 - 2 x 0.3
        (1_000, 100, 800),
        (500, 100, 300),           // floor of 100 ms heartbeats
    ]

    @Test("workers heartbeat every second (a tenth of down-after when shorter) and get a lease of down-after minus two heartbeats",
          arguments: 0..<leases.count)
    func workerLease(_ i: Int) {
        let (downAfter, interval, lease) = Self.leases[i]
        var policy = HealthPolicy()
        policy.downAfter = downAfter
        #expect(policy.heartbeatInterval == interval)
        #expect(policy.workerLease(heartbeatInterval: policy.heartbeatInterval) == lease)
        let config = MasterConfig(id: "m1", dataDir: "/tmp/unused", apiAddress: HostPort(host: "127.0.0.1", port: 8080),
                                  rpcAddress: HostPort(host: "127.0.0.1", port: 9090), peers: [], health: policy)
        #expect(config.heartbeatInterval == .milliseconds(interval))
        #expect(config.workerLease == .milliseconds(lease))
    }

    @Test("for every down-after from 1 s to 5 min the lease ends a margin of two heartbeats before the node can be down, and spans at least 8 heartbeats")
    func leaseIsSafeAndLive() {
        for downAfter in stride(from: Int64(1_000), through: 300_000, by: 250) {
            var policy = HealthPolicy()
            policy.downAfter = downAfter
            let interval = policy.heartbeatInterval
            let lease = policy.workerLease(heartbeatInterval: interval)
            // The worker counts from its send; the master from its receipt, which is later: the
            // node is down no earlier than send + downAfter.
            #expect(lease + 2 * interval <= downAfter, "down-after \(downAfter)")
            #expect(lease >= 8 * interval, "down-after \(downAfter): a healthy worker must not outlive its lease between heartbeats")
        }
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
