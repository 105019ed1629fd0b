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

        // The leader's first pass (monotonic time 0) sees every node; then n2 keeps heartbeating
        // and n1 falls silent.
        let round = ReconcileRound(repository: repo)
        var seen = HeartbeatObservations()
        #expect(try await round.run(now: 100_000, monotonicNow: 0, observations: &seen, jitter: { 0 }).nodeChanges.isEmpty)
        var n2 = try await repo.node("n2")
        n2.lastHeartbeat = 110_000
        try await repo.save(n2, expectRevision: n2.revision)
        let r1 = try await round.run(now: 110_000, monotonicNow: 5_000, observations: &seen, jitter: { 0 })
        #expect(r1.nodeChanges == ["n1": .notReady])
        #expect(r1.lost == 0, "not ready is not down: its tasks stay")

        n2 = try await repo.node("n2")
        n2.lastHeartbeat = 115_000
        try await repo.save(n2, expectRevision: n2.revision)
        let r2 = try await round.run(now: 115_000, monotonicNow: 15_000, observations: &seen, jitter: { 0 })
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

    @Test("a drained node's task moves only once its worker confirmed the stop, without counting a restart")
    func drain() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        try await SchedulingRoundTests.submit(repo, count: 2)
        var scheduler = Scheduler(defaultAlgorithm: .spread)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 1_000)
        // The task on n1 runs (a drain moves running tasks too, not only assigned ones).
        let onN1 = try #require(try await repo.tasks().tasks.first { $0.node == "n1" })
        #expect(try await repo.apply(.running, taskID: onN1.id, nodeID: "n1", epoch: onN1.epoch, now: 1_200))
        var n1 = try await repo.node("n1")
        n1.info.state = .draining
        try await repo.save(n1, expectRevision: n1.revision)
        var seen = HeartbeatObservations()
        let round = ReconcileRound(repository: repo)
        let r = try await round.run(now: 1_500, monotonicNow: 0, observations: &seen, jitter: { 0 })
        #expect(r.moving == 1 && r.rescheduled == 0 && r.lost == 0)
        // Asked to stop, still on n1 with its resources: nothing starts elsewhere yet, and a second
        // pass asks nothing more.
        var task = try await repo.task(onN1.id)
        #expect(task.state == .running && task.node == "n1" && task.moving == "node n1 draining")
        #expect(try await SchedulingRound(repository: repo).run(&scheduler, now: 1_600).placed == 0)
        #expect(try await round.run(now: 1_700, monotonicNow: 200, observations: &seen, jitter: { 0 }).moving == 0)
        #expect(try await repo.node("n1").info.taskCount == 1)

        // The worker confirms: the task is pending, off n1, no restart counted; then it lands on n2.
        #expect(try await repo.apply(.cancelled(reason: "stopped on the worker"), taskID: onN1.id, nodeID: "n1", epoch: onN1.epoch, now: 1_800))
        task = try await repo.task(onN1.id)
        #expect(task.state == .pending && task.node == nil && task.moving == nil && task.retries == 0)
        #expect(try await repo.node("n1").info.taskCount == 0)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 1_900)
        let tasks = try await repo.tasks().tasks
        #expect(tasks.allSatisfy { $0.node == "n2" && $0.retries == 0 })
    }

    @Test("a task whose policy says never stays lost with the reason")
    func neverRestart() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        let spec = TaskSpec(name: "once", image: "alpine", resources: Resources(cpu: 100, memory: 64),
                            restartPolicy: RestartPolicy(condition: .never))
        try await repo.create(TaskRecord(id: "once", spec: spec, now: 0))
        var scheduler = Scheduler()
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 0)
        var seen = HeartbeatObservations()
        _ = try await ReconcileRound(repository: repo).run(now: 1_000, monotonicNow: 0, observations: &seen, jitter: { 0 })
        _ = try await ReconcileRound(repository: repo).run(now: 16_000, monotonicNow: 15_000, observations: &seen, jitter: { 0 })
        let t = try await repo.task("once")
        #expect(t.state == .lost)
        #expect(t.reason == "node n1 down; restart policy never")
    }
}
