import ClusterModel
import Store
import Synchronization
import Testing
@testable import Orchestrator

@Suite struct ClusterCacheTests {
    /// Polls `condition` every 5 ms until it holds, for at most 30 s (a bound on failure only: a
    /// full run's first seconds, every suite starting at once on 2 cores, can take 10 s).
    static func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// A store with `nodes` nodes of `cpu` millicores and `tasks` submitted tasks, and a cache
    /// filled from it (not following it: each test records what it changes).
    static func filledCache(nodes: Int, cpu: Int = 4000, tasks: Int) async throws -> (ClusterRepository, ClusterCache) {
        let repo = try await SchedulingRoundTests.cluster(nodes: nodes, cpu: cpu)
        try await SchedulingRoundTests.submit(repo, count: tasks)
        let cache = ClusterCache()
        try await cache.fill(from: repo)
        return (repo, cache)
    }

    @Test("follows creations, changes and deletions; pending is oldest first and only ready ones")
    func followsTheStore() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        try await SchedulingRoundTests.submit(repo, count: 3)
        let cache = ClusterCache()
        let changes = Atomic<Int>(0)
        let follower = Task { await cache.run(repository: repo) { changes.add(1, ordering: .relaxed) } }
        defer { follower.cancel() }
        try await Self.eventually("the first list") { cache.isSynced }
        #expect(cache.pendingTasks(readyAt: 100).map(\.id) == ["task-0000", "task-0001", "task-0002"])
        #expect(cache.nodes().map(\.info.id) == ["n1", "n2"])

        // A change made by someone else arrives through the watch.
        var t = try await repo.task("task-0001")
        t.state = .cancelled
        t = try await repo.update(t)
        var later = TaskRecord(id: "task-9999", spec: TaskSpec(name: "late", image: "alpine"), now: 50)
        later.notBefore = 200
        try await repo.create(later)
        _ = try await repo.store.delete(ClusterRepository.taskKey("task-0002"))
        try await Self.eventually("the three changes") {
            cache.tasks().count == 3 && cache.pendingTasks(readyAt: 100).map(\.id) == ["task-0000"]
        }
        #expect(cache.pendingTasks(readyAt: 200).map(\.id) == ["task-0000", "task-9999"])
        #expect(cache.tasks().first { $0.id == "task-0001" }?.revision == t.revision)
        #expect(changes.load(ordering: .relaxed) >= 2)
        #expect(cache.revision >= t.revision)
    }

    @Test("a write recorded by the leader is not undone by the watch's older news")
    func recordedWritesWin() async throws {
        let (repo, cache) = try await Self.filledCache(nodes: 1, tasks: 1)
        let original = try #require(cache.tasks().first)
        var assigned = original
        assigned.state = .assigned
        assigned.revision = original.revision + 10
        cache.record(assigned)
        cache.record(original)   // older: ignored
        #expect(cache.tasks().first?.state == .assigned)
        #expect(cache.pendingTasks(readyAt: 100).isEmpty)
    }

    @Test("a round on the cache places like a round on the store and records its own placements")
    func roundOnCache() async throws {
        let (repo, cache) = try await Self.filledCache(nodes: 3, tasks: 30)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        let result = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 100)
        // 3 nodes x 4000 millicores / 500 per task = 24 placements, in one batch of 24.
        #expect(result.placed == 24 && result.conflicts == 0 && result.commits == 1)
        #expect(cache.pendingTasks(readyAt: 100).count == 6)
        let stored = try await repo.tasks().tasks
        for task in cache.tasks() {
            let truth = try #require(stored.first { $0.id == task.id })
            #expect(task.state == truth.state && task.revision == truth.revision && task.node == truth.node)
        }
        for node in cache.nodes() {
            let truth = try await repo.node(node.info.id)
            #expect(node.info == truth.info && node.revision == truth.revision)
        }
        // A second round finds nothing new to place and writes nothing (the reasons are set).
        let again = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 101)
        #expect(again.placed == 0 && again.commits == 0 && again.conflicts == 0)
    }

    @Test("tasks that fit on no node wait aside until a node changes, through updates of their own")
    func unschedulableTasksAreParked() async throws {
        let (repo, cache) = try await Self.filledCache(nodes: 1, cpu: 1000, tasks: 4)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        func round(_ now: Int64) async throws -> RoundResult {
            try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: now)
        }
        func candidates(_ now: Int64 = 200) -> [String] { cache.schedulingCandidates(readyAt: now).tasks.map(\.id) }

        // The first round fills the node. Its placements changed the node, so it parks nothing.
        let first = try await round(100)
        #expect(first.placed == 2 && first.unschedulable == 2)
        #expect(candidates() == ["task-0002", "task-0003"])
        // The second finds them fitting nowhere with the nodes as it read them: parked.
        let second = try await round(101)
        #expect(second.placed == 0 && second.unschedulable == 2)
        #expect(candidates().isEmpty)
        #expect(cache.pendingTasks(readyAt: 200).map(\.id) == ["task-0002", "task-0003"])
        // An update of a parked task (a new reason) leaves it parked; a third round decides nothing.
        var waiting = try await repo.task("task-0002")
        waiting.reason = "still waiting"
        cache.record(try await repo.update(waiting))
        #expect(candidates().isEmpty)
        let third = try await round(102)
        #expect(third.unschedulable == 0 && third.parked == 2)

        // A new task is a candidate alone.
        let late = TaskRecord(id: "task-0100", spec: TaskSpec(name: "late", image: "alpine", resources: Resources(cpu: 500, memory: 256)), now: 103)
        cache.record(try await repo.create(late))
        #expect(candidates() == ["task-0100"])
        // A heartbeat changes no node's room: nothing comes back.
        var node = try await repo.node("n1")
        node.lastHeartbeat = 104
        node = try await repo.save(node, expectRevision: node.revision)
        cache.record(node)
        #expect(candidates() == ["task-0100"])
        // The rounds' sorted copy of the nodes is not kept past a change, even this one.
        #expect(cache.nodes().map(\.lastHeartbeat) == [104])
        // Room freed on the node: every parked task is a candidate again, and one is placed.
        node.info.allocated = Resources(cpu: 500, memory: 256)
        node = try await repo.save(node, expectRevision: node.revision)
        cache.record(node)
        #expect(candidates() == ["task-0002", "task-0003", "task-0100"])
        let fourth = try await round(105)
        #expect(fourth.placed == 1 && fourth.unschedulable == 2 && fourth.parked == 0)
        #expect(try await repo.task("task-0002").state == .assigned)
        // A parked task that is cancelled leaves the pending tasks altogether.
        #expect(try await round(106).unschedulable == 2)
        #expect(candidates().isEmpty)
        var cancelled = try await repo.task("task-0003")
        cancelled.state = .cancelled
        cache.record(try await repo.update(cancelled))
        #expect(cache.pendingTasks(readyAt: 200).map(\.id) == ["task-0100"])
    }

    @Test("a stale cache delays a placement but never commits one onto a node that changed")
    func staleCacheIsSafe() async throws {
        let (repo, cache) = try await Self.filledCache(nodes: 2, cpu: 1000, tasks: 2)
        // Behind the cache's back: n1 is cordoned and n2 fills up.
        var n1 = try await repo.node("n1")
        n1.info.schedulable = false
        try await repo.save(n1, expectRevision: n1.revision)
        var n2 = try await repo.node("n2")
        n2.info.allocated = Resources(cpu: 1000, memory: 0)
        try await repo.save(n2, expectRevision: n2.revision)

        var scheduler = Scheduler(defaultAlgorithm: .spread)
        let result = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 100)
        #expect(result.placed == 0)
        #expect(result.conflicts >= 1)
        #expect(try await repo.tasks().tasks.allSatisfy { $0.state == .pending })
        #expect(try await repo.node("n1").info.taskCount == 0)
        #expect(try await repo.node("n2").info.allocated.cpu == 1000)
        // The conflict refreshed what the round touched.
        #expect(cache.node("n1")?.info.schedulable == false)
    }

    @Test("a batch refused because one node changed is decided again and committed as one batch, not task by task")
    func refusedBatchIsRetriedAsABatch() async throws {
        let (repo, cache) = try await Self.filledCache(nodes: 2, cpu: 4000, tasks: 4)
        var n1 = try await repo.node("n1")
        n1.info.schedulable = false
        try await repo.save(n1, expectRevision: n1.revision)

        // Spread puts 2 tasks on each node; n1's changed revision refuses the batch; decided
        // again on fresh nodes all 4 go to n2 in one more transaction.
        var scheduler = Scheduler(defaultAlgorithm: .spread)
        let result = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 100)
        #expect(result.placed == 4 && result.conflicts == 1 && result.commits == 1)
        #expect(try await repo.tasks().tasks.allSatisfy { $0.state == .assigned && $0.node == "n2" })
        #expect(try await repo.node("n2").info.taskCount == 4)
    }
}
