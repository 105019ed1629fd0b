import ClusterModel
import Store
import Synchronization
import Testing
@testable import Orchestrator

@Suite struct TaskRetentionTests {
    static let day: Int64 = 86_400_000

    static func task(_ id: String, _ state: TaskState, updatedAt: Int64, retries: Int = 0,
                     policy: RestartPolicy = RestartPolicy(condition: .onFailure, maxRetries: 3)) -> TaskRecord {
        var t = ReconcilerTests.task(id, state, retries: retries, policy: policy)
        t.updatedAt = updatedAt
        return t
    }

    @Test("only tasks ended for good and older than the retention go, oldest first, at most a pass, in batches")
    func expired() {
        let now = 10 * Self.day
        let retention = TaskRetention(retentionMs: Self.day, batchLimit: 2, passLimit: 3)
        let tasks = [
            Self.task("done-old", .completed, updatedAt: now - 2 * Self.day),
            Self.task("done-new", .completed, updatedAt: now - Self.day + 1),
            Self.task("done-edge", .completed, updatedAt: now - Self.day),
            Self.task("cancelled-old", .cancelled, updatedAt: now - 3 * Self.day),
            Self.task("failed-will-restart", .failed, updatedAt: now - 5 * Self.day),
            Self.task("failed-spent", .failed, updatedAt: now - 4 * Self.day, retries: 3),
            Self.task("completed-always", .completed, updatedAt: now - 6 * Self.day, policy: RestartPolicy(condition: .always, maxRetries: 2)),
            Self.task("running-old", .running, updatedAt: now - 9 * Self.day),
            Self.task("pending-old", .pending, updatedAt: now - 9 * Self.day),
            Self.task("lost-old", .lost, updatedAt: now - 9 * Self.day),
        ]
        #expect(retention.expired(tasks, now: now).map(\.id) == ["failed-spent", "cancelled-old", "done-old"])
        #expect(retention.batches(retention.expired(tasks, now: now)).map { $0.map(\.id) }
                == [["failed-spent", "cancelled-old"], ["done-old"]])
        // etcd's default --max-txn-ops.
        #expect(TaskRetention().batchLimit <= 128)
        #expect(TaskRetention(retentionMs: Self.day).expired(tasks, now: now).map(\.id)
                == ["failed-spent", "cancelled-old", "done-old", "done-edge"])
    }

    /// A leadership that is always this master's, at term 1.
    struct AlwaysLeader: Leadership {
        func current() async -> (isLeader: Bool, term: UInt64) { (true, 1) }
    }

    @Test("the leader deletes expired tasks (each a task_deleted in the store's history) and keeps the rest")
    func leaderDeletes() async throws {
        let store = MemoryStore()
        let repo = ClusterRepository(store: store)
        let now = 10 * Self.day
        for t in [Self.task("old-done", .completed, updatedAt: now - 2 * Self.day),
                  Self.task("old-cancelled", .cancelled, updatedAt: now - 2 * Self.day),
                  Self.task("recent", .completed, updatedAt: now - 1000),
                  Self.task("will-restart", .failed, updatedAt: now - 2 * Self.day)] {
            try await repo.create(t)
        }
        let before = try await store.range(RangeRequest(key: ClusterRepository.leaderKey, countOnly: true), consistency: .serializable).revision
        var options = LeaderLoop.Options()
        options.taskRetention = TaskRetention(retentionMs: Self.day)
        options.retentionInterval = .milliseconds(20)
        options.jitterSeed = 1
        let loop = LeaderLoop(repository: repo, leadership: AlwaysLeader(), masterID: "m1", defaultAlgorithm: .binPacking,
                              options: options, now: { now }, logger: .init(label: "test"))
        let running = Task { await loop.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try await repo.tasks().tasks.count > 2 {
            guard ContinuousClock.now < deadline else { Issue.record("the expired tasks were not deleted"); return }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await repo.tasks().tasks.map(\.id).sorted() == ["recent", "will-restart"])
        #expect(loop.deletedTasks.load(ordering: .relaxed) == 2)
        // What an event stream reads: a delete of each expired task's key.
        var deleted: [String] = []
        for try await response in store.watch(key: ClusterRepository.taskPrefix, rangeEnd: KeyRange.prefixEnd(ClusterRepository.taskPrefix),
                                              fromRevision: before + 1, prevKV: false) {
            deleted += response.events.filter { $0.kind == .delete }.map { String(decoding: $0.kv.key.dropFirst(ClusterRepository.taskPrefix.count), as: UTF8.self) }
            if deleted.count >= 2 { break }
        }
        #expect(deleted.sorted() == ["old-cancelled", "old-done"])
    }
}

extension TaskRetentionTests {
    @Test("a backlog larger than a pass is deleted pass after pass within seconds, not one pass per interval")
    func backlogKeepsPace() async throws {
        // 4 passes of at most 300: about 3 s with the backlog rule, 3 minutes without it.
        let loop = try await Self.deleteBacklog(leadership: AlwaysLeader(), within: .seconds(30))
        #expect(loop.deletedTasks.load(ordering: .relaxed) == 1_000)
    }

    /// Leads at term 1, but from its second question on answers only when the test ends: the loop
    /// is held in one iteration, as a scheduling round that meets conflict after conflict holds it.
    final class StuckLeadership: Leadership {
        let calls = Mutex(0)
        func current() async -> (isLeader: Bool, term: UInt64) {
            let call = calls.withLock { c -> Int in
                c += 1
                return c
            }
            if call > 1 { try? await Task.sleep(for: .seconds(3600)) }
            return (true, 1)
        }
    }

    @Test("retention keeps its own cadence while the loop is held in one long iteration")
    func retentionBesideAStuckLoop() async throws {
        // 4 passes of at most 300, a second apart. Passes started by the loop would stop after
        // the first: the loop never comes round again.
        let leadership = StuckLeadership()
        let loop = try await Self.deleteBacklog(leadership: leadership, within: .seconds(60))
        #expect(loop.deletedTasks.load(ordering: .relaxed) == 1_000)
        #expect(leadership.calls.withLock { $0 } == 2, "the loop stayed in its second iteration")
    }

    /// 1,000 tasks past their retention, a leader loop deleting at most 300 a pass with passes a
    /// minute apart (a full pass brings the next one forward), run until none is left and all are
    /// counted; records an issue if that takes longer than `within`.
    static func deleteBacklog(leadership: any Leadership, within: Duration) async throws -> LeaderLoop {
        let repo = ClusterRepository(store: MemoryStore())
        let now = 10 * Self.day
        for i in 0..<1_000 {
            try await repo.create(Self.task(String(format: "t%04d", i), .completed, updatedAt: now - 2 * Self.day))
        }
        var options = LeaderLoop.Options()
        options.taskRetention = TaskRetention(retentionMs: Self.day, batchLimit: 128, passLimit: 300)
        options.retentionInterval = .seconds(60)
        options.jitterSeed = 1
        let loop = LeaderLoop(repository: repo, leadership: leadership, masterID: "m1", defaultAlgorithm: .binPacking,
                              options: options, now: { now }, logger: .init(label: "test"))
        let running = Task { await loop.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + within
        // The pass counts its deletions after its last batch commits: wait for the count too.
        while try await repo.tasks().tasks.count > 0 || loop.deletedTasks.load(ordering: .relaxed) < 1_000 {
            guard ContinuousClock.now < deadline else {
                Issue.record("\(try await repo.tasks().tasks.count) expired tasks left, \(loop.deletedTasks.load(ordering: .relaxed)) deletions counted after \(within)")
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return loop
    }
}

@Suite struct NodeRemovalTests {
    @Test("down nodes with no task go once silent longer than the purge time, by heartbeat (else their record)")
    func purge() {
        func node(_ id: String, _ state: NodeState, tasks: Int = 0, heartbeat: Int64 = 0) -> NodeRecord {
            var n = ReconcilerTests.node(id, state: state, lastHeartbeat: heartbeat)
            n.info.taskCount = tasks
            if tasks > 0 { n.info.allocated = Resources(cpu: 100, memory: 64) }
            return n
        }
        let nodes = [node("gone", .down), node("recent", .down), node("busy", .down, tasks: 1), node("ready", .ready),
                     node("no-beat", .down, heartbeat: 1_000)]
        let heartbeats: [String: Int64] = ["gone": 1_000, "recent": 9_500, "busy": 1_000, "ready": 0]
        #expect(NodePurge(afterMs: 5_000).expired(nodes, heartbeats: heartbeats, now: 10_000) == ["gone", "no-beat"])
        #expect(NodePurge(afterMs: 9_000).expired(nodes, heartbeats: heartbeats, now: 10_000).isEmpty)
    }

    @Test("DELETE /api/v1/nodes/{id}: 409 node_busy while tasks are placed on it, then 200 and gone with its heartbeat; 404 after")
    func deleteNode() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.repository.recordHeartbeat(nodeID: "n1", now: APIFixture.now)
        try await f.test { client in
            let task = try await client.createTask()
            try await f.place(task, on: "n1")
            let busy = try await client.send(.delete, "/api/v1/nodes/n1")
            #expect(busy.status == .conflict && busy.errorCode == "node_busy", "\(busy.text)")
            _ = try await client.send(.delete, "/api/v1/tasks/\(task)")
            let removed = try await client.send(.delete, "/api/v1/nodes/n1")
            #expect(removed.status == .ok && removed.json["id"] as? String == "n1", "\(removed.text)")
            #expect(try await client.send(.get, "/api/v1/nodes/n1").status == .notFound)
            #expect(try await f.repository.heartbeat(of: "n1") == nil)
            #expect(try await client.send(.delete, "/api/v1/nodes/n1").status == .notFound)
        }
    }
}
