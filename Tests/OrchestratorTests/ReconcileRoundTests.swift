import ClusterModel
import Store
import Testing
@testable import Orchestrator

@Suite struct ReconcileRoundTests {
    @Test("a silent node goes not ready, then down; its tasks are lost and rescheduled elsewhere after backoff")
    func downNodeTasksRescheduled() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        try await SchedulingRoundTests.submit(repo, count: 4)
        // Every node heartbeats at t = 100,000; the leader has led since 0.
        for var n in try await repo.nodes() {
            n.lastHeartbeat = 100_000
            try await repo.save(n, expectRevision: n.revision)
        }
        var scheduler = Scheduler(defaultAlgorithm: .roundRobin)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 100_000)
        let onN1 = try await repo.tasks().tasks.filter { $0.node == "n1" }.map(\.id)
        #expect(onN1.count == 2)

        // n2 keeps heartbeating, n1 falls silent.
        var n2 = try await repo.node("n2")
        n2.lastHeartbeat = 110_000
        try await repo.save(n2, expectRevision: n2.revision)
        let round = ReconcileRound(repository: repo)
        let r1 = try await round.run(now: 110_000, leaderSince: 0, jitter: { 0 })
        #expect(r1.nodeChanges == ["n1": .notReady])
        #expect(r1.lost == 0, "not ready is not down: its tasks stay")

        n2 = try await repo.node("n2")
        n2.lastHeartbeat = 115_000
        try await repo.save(n2, expectRevision: n2.revision)
        let r2 = try await round.run(now: 115_000, leaderSince: 0, jitter: { 0 })
        #expect(r2.nodeChanges == ["n1": .down])
        #expect(r2.lost == 2 && r2.rescheduled == 2)
        let n1 = try await repo.node("n1")
        #expect(n1.info.allocated == .zero && n1.info.taskCount == 0)
        let moved = try await repo.tasks().tasks.filter { onN1.contains($0.id) }
        #expect(moved.allSatisfy { $0.state == .pending && $0.retries == 1 && $0.notBefore == 116_000 && $0.node == nil })

        // Before the backoff ends nothing moves; after it, they land on n2.
        var placed = try await SchedulingRound(repository: repo).run(&scheduler, now: 115_500)
        #expect(placed.placed == 0)
        placed = try await SchedulingRound(repository: repo).run(&scheduler, now: 116_000)
        #expect(placed.placed == 2)
        #expect(try await repo.tasks().tasks.allSatisfy { $0.node == "n2" && $0.state == .assigned })
        #expect(try await repo.node("n2").info.taskCount == 4)
    }

    @Test("a drained node hands its tasks to other nodes without counting a restart")
    func drain() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        try await SchedulingRoundTests.submit(repo, count: 2)
        for var n in try await repo.nodes() {
            n.lastHeartbeat = 1_000
            try await repo.save(n, expectRevision: n.revision)
        }
        var scheduler = Scheduler(defaultAlgorithm: .spread)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 1_000)
        // The task on n1 runs (a drain moves running tasks too, not only assigned ones).
        let onN1 = try #require(try await repo.tasks().tasks.first { $0.node == "n1" })
        #expect(try await repo.apply(.running, taskID: onN1.id, nodeID: "n1", epoch: onN1.epoch, now: 1_200))
        var n1 = try await repo.node("n1")
        n1.info.state = .draining
        try await repo.save(n1, expectRevision: n1.revision)
        let r = try await ReconcileRound(repository: repo).run(now: 1_500, leaderSince: 0, jitter: { 0 })
        #expect(r.rescheduled == 1 && r.lost == 0)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 1_500)
        let tasks = try await repo.tasks().tasks
        #expect(tasks.allSatisfy { $0.node == "n2" && $0.retries == 0 })
        #expect(try await repo.node("n1").info.taskCount == 0)
    }

    @Test("a task whose policy says never stays lost with the reason")
    func neverRestart() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        let spec = TaskSpec(name: "once", image: "alpine", resources: Resources(cpu: 100, memory: 64),
                            restartPolicy: RestartPolicy(condition: .never))
        try await repo.create(TaskRecord(id: "once", spec: spec, now: 0))
        var scheduler = Scheduler()
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 0)
        _ = try await ReconcileRound(repository: repo).run(now: 1_000_000, leaderSince: 0, jitter: { 0 })
        let t = try await repo.task("once")
        #expect(t.state == .lost)
        #expect(t.reason == "node n1 down; restart policy never")
    }
}
