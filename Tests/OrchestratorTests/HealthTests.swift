import ClusterModel
import Testing
@testable import Orchestrator

@Suite struct HealthPolicyTests {
    static func node(lastHeartbeat: Int64, state: NodeState = .ready) -> NodeRecord {
        NodeRecord(info: NodeInfo(id: "n", state: state, capacity: Resources(cpu: 1000, memory: 1000)),
                   address: "", lastHeartbeat: lastHeartbeat)
    }

    static let cases: [(Int64, NodeState, NodeState)] = [
        // (silence ms, stored state, expected)
        (4_999, .ready, .ready),
        (5_000, .ready, .notReady),    // 5 s: not ready
        (14_999, .ready, .notReady),
        (15_000, .ready, .down),       // 15 s: down
        (1_000, .draining, .draining), // draining stays draining
        (15_000, .draining, .down),    // ... until it goes down
        (1_000, .down, .ready),        // a heartbeat brings a down node back
    ]

    @Test("not ready after 5 s of silence, down after 15 s", arguments: 0..<cases.count)
    func thresholds(_ i: Int) {
        let (silence, stored, expected) = Self.cases[i]
        #expect(HealthPolicy().state(of: Self.node(lastHeartbeat: 0, state: stored), silence: silence) == expected)
    }

    @Test("silence is timed on the leader's monotonic clock from the last change it saw; wall-clock values only tell that a heartbeat came")
    func observations() {
        var seen = HeartbeatObservations()
        let n = Self.node(lastHeartbeat: 50)
        // First sight (a new leader, or a new node): just heard from, whatever the stored values say.
        #expect(seen.observe(nodes: [n], heartbeats: ["n": 1_000], at: 7_000) == ["n": 0])
        #expect(seen.observe(nodes: [n], heartbeats: ["n": 1_000], at: 12_000) == ["n": 5_000])
        // A new heartbeat stamped an hour in the future (a follower's clock stepped forward) is a
        // sign of life, not a reason to think the others are an hour late.
        #expect(seen.observe(nodes: [n], heartbeats: ["n": 3_601_000], at: 13_000) == ["n": 0])
        // ... and one stamped before the previous value (the clock stepped back) is one too.
        #expect(seen.observe(nodes: [n], heartbeats: ["n": 2_000], at: 14_000) == ["n": 0])
        #expect(seen.observe(nodes: [n], heartbeats: ["n": 2_000], at: 29_000) == ["n": 15_000])
        // A re-join rewrites the node record's time: also a sign of life.
        var rejoined = n
        rejoined.lastHeartbeat = 60
        #expect(seen.observe(nodes: [rejoined], heartbeats: ["n": 2_000], at: 30_000) == ["n": 0])
        // A node that left is forgotten, and counts afresh if it comes back.
        #expect(seen.observe(nodes: [], heartbeats: [:], at: 31_000) == [:])
        #expect(seen.observe(nodes: [rejoined], heartbeats: ["n": 2_000], at: 40_000) == ["n": 0])
    }

    @Test("a master's wall clock stepped by an hour marks no healthy node down")
    func wallClockStep() {
        let policy = HealthPolicy()
        var seen = HeartbeatObservations()
        let nodes = (0..<100).map { NodeRecord(info: NodeInfo(id: "n\($0)", capacity: Resources(cpu: 1000, memory: 1000)), address: "", lastHeartbeat: 0) }
        var wall: Int64 = 1_000_000
        for second in 0..<60 {
            // At second 20 the master that receives heartbeats jumps an hour ahead; at second 40,
            // back. The leader's monotonic clock ticks on regardless.
            if second == 20 { wall += 3_600_000 }
            if second == 40 { wall -= 3_600_000 }
            wall += 1_000
            let beats = Dictionary(uniqueKeysWithValues: nodes.map { ($0.info.id, wall) })
            let silences = seen.observe(nodes: nodes, heartbeats: beats, at: Int64(second) * 1_000)
            #expect(nodes.allSatisfy { policy.state(of: $0, silence: silences[$0.info.id] ?? 0) == .ready }, "second \(second)")
        }
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
