import ClusterModel
import Logging
import Store
import Testing
@testable import Orchestrator

/// Rounds that place nothing are spaced (`LeaderLoop.Options.idleRoundGap`); rounds that place
/// keep running back to back.
@Suite struct LeaderRoundPacingTests {
    static func loop(_ repo: ClusterRepository, gap: Duration) -> LeaderLoop {
        var options = LeaderLoop.Options()
        options.taskRetention = nil
        options.nodePurge = nil
        options.jitterSeed = 1
        options.idleRoundGap = gap
        return LeaderLoop(repository: repo, leadership: TaskRetentionTests.AlwaysLeader(), masterID: "m1",
                          defaultAlgorithm: .binPacking, options: options, now: { 0 }, logger: Logger(label: "test"))
    }

    @Test("with every node cordoned, a change every 2 ms starts a round at most every 50 ms, not one per change")
    func unproductiveRoundsAreSpaced() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        for id in ["n1", "n2"] {
            var node = try await repo.node(id)
            node.info.schedulable = false
            try await repo.save(node, expectRevision: node.revision)
        }
        try await SchedulingRoundTests.submit(repo, count: 20)
        let loop = Self.loop(repo, gap: .milliseconds(50))
        let running = Task { await loop.run() }
        defer { running.cancel() }
        try await ClusterCacheTests.eventually("the first round") { loop.rounds.load(ordering: .relaxed) >= 1 }
        let before = loop.rounds.load(ordering: .relaxed)
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(1) {
            loop.cacheChanged()
            try await Task.sleep(for: .milliseconds(2))
        }
        let rounds = loop.rounds.load(ordering: .relaxed) - before
        // About 20 in the second (1 s / 50 ms, plus the periodic one); without the gap, one per
        // change: hundreds. A slow machine gives fewer, never more.
        #expect(rounds <= 30, "\(rounds) rounds in 1 s")
        #expect(loop.placements.load(ordering: .relaxed) == 0)
    }

    @Test("rounds that place, or find nothing pending, start the next round at once")
    func otherRoundsAreNotSpaced() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1, cpu: 100_000)
        try await SchedulingRoundTests.submit(repo, count: 5)
        // A gap and a period far longer than the test may wait: only rounds started by changes
        // can place the second tasks.
        var options = LeaderLoop.Options()
        options.taskRetention = nil
        options.nodePurge = nil
        options.jitterSeed = 1
        options.idleRoundGap = .seconds(3600)
        options.period = .seconds(3600)
        let loop = LeaderLoop(repository: repo, leadership: TaskRetentionTests.AlwaysLeader(), masterID: "m1",
                              defaultAlgorithm: .binPacking, options: options, now: { 0 }, logger: Logger(label: "test"))
        let running = Task { await loop.run() }
        defer { running.cancel() }
        try await ClusterCacheTests.eventually("5 placed") { loop.placements.load(ordering: .relaxed) == 5 }
        for i in 5..<10 {
            let spec = TaskSpec(name: "t\(i)", image: "alpine", resources: Resources(cpu: 500, memory: 256))
            try await repo.create(TaskRecord(id: String(format: "task-%04d", i), spec: spec, now: Int64(i)))
        }
        try await ClusterCacheTests.eventually("10 placed") { loop.placements.load(ordering: .relaxed) == 10 }
    }
}
