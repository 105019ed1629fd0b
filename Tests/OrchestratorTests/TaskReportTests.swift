import ClusterModel
import Store
import Testing
@testable import Orchestrator

@Suite struct TaskReportTests {
    static func assigned(state: TaskState = .assigned, node: String? = "n1", epoch: UInt64 = 3) -> TaskRecord {
        var t = TaskRecord(id: "t1", spec: TaskSpec(name: "t", image: "alpine"), now: 0)
        t.state = state
        t.node = node
        t.epoch = epoch
        return t
    }

    @Test("the decision table: current assignment, stale epoch, other node, ended task")
    func decisions() {
        let t = Self.assigned()
        // running: assigned -> running once; a repeat changes nothing.
        guard case .update(let running) = TaskReport.running.decide(for: t, from: "n1", epoch: 3, now: 10) else {
            Issue.record("running should update"); return
        }
        #expect(running.state == .running && running.updatedAt == 10)
        #expect(TaskReport.running.decide(for: running, from: "n1", epoch: 3, now: 11) == .unchanged)
        // Stale: older epoch, another node, or a task no longer assigned (cancelled, rescheduled).
        #expect(TaskReport.completed.decide(for: t, from: "n1", epoch: 2, now: 10) == .stale)
        #expect(TaskReport.completed.decide(for: t, from: "n2", epoch: 3, now: 10) == .stale)
        #expect(TaskReport.completed.decide(for: Self.assigned(state: .cancelled, node: nil), from: "n1", epoch: 3, now: 10) == .stale)
        // Endings release the node.
        guard case .release(let done) = TaskReport.completed.decide(for: running, from: "n1", epoch: 3, now: 12) else {
            Issue.record("completed should release"); return
        }
        #expect(done.state == .completed && done.exitCode == 0 && done.node == nil)
        guard case .release(let failed) = TaskReport.failed(exitCode: 3, reason: "exit code 3").decide(for: running, from: "n1", epoch: 3, now: 12) else {
            Issue.record("failed should release"); return
        }
        #expect(failed.state == .failed && failed.exitCode == 3 && failed.reason == "exit code 3")
    }

    @Test("a task moving off a draining node: the confirmed stop makes it pending with no restart; any other ending is an ending")
    func movingDecisions() {
        var t = Self.assigned(state: .running)
        t.moving = "node n1 draining"
        t.retries = 1
        guard case .release(let moved) = TaskReport.cancelled(reason: "stopped on the worker").decide(for: t, from: "n1", epoch: 3, now: 20) else {
            Issue.record("a confirmed stop should release"); return
        }
        #expect(moved.state == .pending && moved.node == nil && moved.moving == nil && moved.retries == 1 && moved.placement == nil)
        #expect(moved.reason == "node n1 draining: stopped on n1, moving")
        guard case .release(let done) = TaskReport.completed.decide(for: t, from: "n1", epoch: 3, now: 20) else {
            Issue.record("completed should release"); return
        }
        #expect(done.state == .completed && done.moving == nil)
        // A stop reported for an older copy does not move the current one.
        #expect(TaskReport.cancelled(reason: "").decide(for: t, from: "n1", epoch: 2, now: 20) == .stale)
        // The same report for a task not moving is a failure (stopped by someone on the worker).
        t.moving = nil
        guard case .release(let failed) = TaskReport.cancelled(reason: "").decide(for: t, from: "n1", epoch: 3, now: 20) else {
            Issue.record("cancelled should release"); return
        }
        #expect(failed.state == .failed)
    }

    @Test("a report through the repository releases the node's resources; a second copy of it is stale")
    func applyReleases() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        try await SchedulingRoundTests.submit(repo, count: 1, cpu: 700)
        var scheduler = Scheduler()
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 100)
        let task = try await repo.task("task-0000")
        #expect(task.state == .assigned && task.epoch == 1)
        #expect(try await repo.node("n1").info.allocated.cpu == 700)

        #expect(try await repo.apply(.running, taskID: task.id, nodeID: "n1", epoch: 1, now: 200))
        #expect(try await repo.task(task.id).state == .running)
        #expect(try await repo.apply(.failed(exitCode: 2, reason: "exit code 2"), taskID: task.id, nodeID: "n1", epoch: 1, now: 300))
        let ended = try await repo.task(task.id)
        #expect(ended.state == .failed && ended.exitCode == 2)
        let node = try await repo.node("n1")
        #expect(node.info.allocated == .zero && node.info.taskCount == 0)
        // Delivered twice (a retry after a lost acknowledgement): nothing changes twice.
        #expect(try await repo.apply(.failed(exitCode: 2, reason: "exit code 2"), taskID: task.id, nodeID: "n1", epoch: 1, now: 400) == false)
        #expect(try await repo.node("n1").info.taskCount == 0)
        #expect(try await repo.apply(.running, taskID: "no-such-task", nodeID: "n1", epoch: 1, now: 400) == false)
    }

    @Test("the reconcile pass restarts a failed task per its policy (a second write), and leaves completed on-failure tasks alone")
    func restartAfterFailure() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        try await SchedulingRoundTests.submit(repo, count: 2)
        var scheduler = Scheduler()
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 100)
        try await repo.recordHeartbeat(nodeID: "n1", now: 1_000)
        try await repo.apply(.failed(exitCode: 1, reason: "exit code 1"), taskID: "task-0000", nodeID: "n1", epoch: 1, now: 1_000)
        try await repo.apply(.completed, taskID: "task-0001", nodeID: "n1", epoch: 1, now: 1_000)
        var seen = HeartbeatObservations()
        let result = try await ReconcileRound(repository: repo).run(now: 1_000, monotonicNow: 0, observations: &seen, jitter: { 0 })
        #expect(result.restarted == 1)
        let restarted = try await repo.task("task-0000")
        // Default policy: on-failure, 3 retries, backoff 1,000 ms doubling; jitter 0 -> exactly 1,000.
        #expect(restarted.state == .pending && restarted.retries == 1 && restarted.notBefore == 2_000)
        #expect(try await repo.task("task-0001").state == .completed)
        #expect(result.nodeChanges.isEmpty, "a node just seen is ready")
    }

    @Test("heartbeats are their own keys: recording one does not change the node record's revision")
    func heartbeatsDoNotTouchNodes() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        let before = try await repo.node("n1").revision
        try await repo.recordHeartbeat(nodeID: "n1", now: 42)
        #expect(try await repo.node("n1").revision == before)
        #expect(try await repo.heartbeats() == ["n1": 42])
    }

    @Test("join creates a node, and a second join with the same id keeps its allocation")
    func joinTwice() async throws {
        let repo = ClusterRepository(store: MemoryStore())
        let (first, credential) = try await repo.join(id: "w1", address: "127.0.0.1:9091", capacity: Resources(cpu: 2000, memory: 1024), labels: ["zone": "a"], now: 5,
                                                      tokenAccepted: true)
        let secret = try #require(credential).secret
        #expect(first.info.state == .ready && first.info.capacity.cpu == 2000)
        var n = first
        n.info.allocated = Resources(cpu: 500, memory: 100)
        n.info.taskCount = 1
        try await repo.save(n, expectRevision: n.revision)
        let (again, kept) = try await repo.join(id: "w1", address: "127.0.0.1:9092", capacity: Resources(cpu: 4000, memory: 2048), labels: [:], now: 9,
                                                presentedCredential: secret, tokenAccepted: false)
        #expect(kept == nil)
        #expect(again.info.allocated.cpu == 500 && again.info.taskCount == 1 && again.address == "127.0.0.1:9092" && again.info.capacity.cpu == 4000)
    }
}
