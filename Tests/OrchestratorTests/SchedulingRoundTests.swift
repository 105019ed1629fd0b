import ClusterModel
import Store
import Testing
@testable import Orchestrator

@Suite struct SchedulingRoundTests {
    static func cluster(nodes: Int, cpu: Int = 4000) async throws -> ClusterRepository {
        let repo = ClusterRepository(store: MemoryStore())
        for i in 1...nodes {
            let info = NodeInfo(id: "n\(i)", capacity: Resources(cpu: cpu, memory: 8192))
            try await repo.save(NodeRecord(info: info, address: "127.0.0.1", lastHeartbeat: 0), expectRevision: 0)
        }
        return repo
    }

    static func submit(_ repo: ClusterRepository, count: Int, cpu: Int = 500) async throws {
        for i in 0..<count {
            let spec = TaskSpec(name: "t\(i)", image: "alpine", resources: Resources(cpu: cpu, memory: 256))
            try await repo.create(TaskRecord(id: String(format: "task-%04d", i), spec: spec, now: Int64(i)))
        }
    }

    @Test("tasks beyond capacity stay pending with a reason; placed ones are recorded with their node and epoch")
    func capacity() async throws {
        let repo = try await Self.cluster(nodes: 3)
        try await Self.submit(repo, count: 30)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        let result = try await SchedulingRound(repository: repo).run(&scheduler, now: 100)
        // 3 nodes x 4000 millicores / 500 per task = 24 placements; 6 tasks find no room.
        #expect(result.placed == 24)
        #expect(result.unschedulable == 6)
        let tasks = try await repo.tasks().tasks
        let assigned = tasks.filter { $0.state == .assigned }
        #expect(assigned.count == 24)
        #expect(assigned.allSatisfy { $0.epoch == 1 && $0.node != nil && $0.placement?.node == $0.node })
        let pending = tasks.filter { $0.state == .pending }
        #expect(pending.count == 6)
        #expect(pending.allSatisfy { $0.reason == "0/3 nodes available: 3 insufficient-resources" })
        for node in try await repo.nodes() {
            #expect(node.info.allocated.cpu == 4000 && node.info.taskCount == 8)
        }
    }

    @Test("two schedulers racing on one store (an election overlap) never over-commit a node nor assign a task twice")
    func concurrentSchedulers() async throws {
        let repo = try await Self.cluster(nodes: 4, cpu: 3000)
        try await Self.submit(repo, count: 60)
        async let a: RoundResult = { var s = Scheduler(defaultAlgorithm: .spread); return try await SchedulingRound(repository: repo).run(&s, now: 1) }()
        async let b: RoundResult = { var s = Scheduler(defaultAlgorithm: .binPacking); return try await SchedulingRound(repository: repo).run(&s, now: 1) }()
        let (ra, rb) = try await (a, b)
        let tasks = try await repo.tasks().tasks
        let assigned = tasks.filter { $0.state == .assigned }
        // 4 nodes x 3000 / 500 = 24 slots.
        #expect(assigned.count == 24)
        #expect(ra.placed + rb.placed == 24)
        #expect(assigned.allSatisfy { $0.epoch == 1 }, "a task was assigned twice")
        var perNode: [String: Int] = [:]
        for t in assigned { perNode[t.node!, default: 0] += t.spec.resources.cpu }
        for node in try await repo.nodes() {
            #expect(node.info.allocated.cpu <= node.info.capacity.cpu)
            #expect(node.info.allocated.cpu == perNode[node.info.id, default: 0], "allocation and assignments disagree on \(node.info.id)")
        }
    }

    @Test("create refuses a duplicate id; update refuses a stale revision")
    func optimisticConcurrency() async throws {
        let repo = ClusterRepository(store: MemoryStore())
        let t = try await repo.create(TaskRecord(id: "x", spec: TaskSpec(name: "x", image: "alpine"), now: 0))
        await #expect(throws: RepositoryError.alreadyExists("x")) { try await repo.create(t) }
        var fresh = t
        fresh.reason = "first"
        _ = try await repo.update(fresh)
        var stale = t
        stale.reason = "second"
        await #expect(throws: RepositoryError.self) { try await repo.update(stale) }
        #expect(try await repo.task("x").reason == "first")
    }

    @Test("placements commit in batches: 8 tasks fit (8 x 500 = 4,000 millicores), in ceil(8 / 3) = 3 transactions; the 2 others stay pending")
    func batches() async throws {
        let repo = try await Self.cluster(nodes: 1)
        try await Self.submit(repo, count: 10)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        let result = try await SchedulingRound(repository: repo, batchSize: 3).run(&scheduler, now: 100)
        #expect(result.placed == 8 && result.commits == 3 && result.unschedulable == 2 && result.conflicts == 0)
        let node = try await repo.node("n1")
        #expect(node.info.allocated.cpu == 4000 && node.info.taskCount == 8)
        #expect(try await repo.tasks().tasks.filter { $0.state == .assigned }.allSatisfy { $0.epoch == 1 && $0.node == "n1" })
    }

    @Test("a batch read before a concurrent change writes nothing")
    func staleBatchRefused() async throws {
        let repo = try await Self.cluster(nodes: 1)
        try await Self.submit(repo, count: 2)
        let nodes = try await repo.nodes()
        let tasks = try await repo.tasks().tasks
        // Someone else changes the node after we read it.
        var n = nodes[0]
        n.info.schedulable = false
        try await repo.save(n, expectRevision: n.revision)
        let placement = PlacementRecord(node: "n1", score: 1, algorithm: .binPacking, filters: [])
        let written = try await repo.assignBatch(tasks.map { ($0, placement) }, nodes: nodes, now: 5)
        #expect(written == nil)
        #expect(try await repo.tasks().tasks.allSatisfy { $0.state == .pending })
        #expect(try await repo.node("n1").info.taskCount == 0)
    }

    @Test("a backlog's reasons cost few writes: set when missing, at most maxReasonUpdates per round in batches, refreshed only after reasonRefreshMs")
    func reasonsAreRateLimited() async throws {
        let repo = try await Self.cluster(nodes: 1, cpu: 400)
        try await Self.submit(repo, count: 120)
        var round = SchedulingRound(repository: repo, batchSize: 25)
        round.limits.maxReasonUpdates = 100
        round.limits.reasonRefreshMs = 5_000
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        let before = try await repo.store.range(RangeRequest(key: ClusterRepository.taskKey("x"), countOnly: true), consistency: .serializable).revision
        let first = try await round.run(&scheduler, now: 1_000)
        // 500 millicores fit nowhere on a 400-millicore node: all 120 wait; 100 reasons written in
        // 100 / 25 = 4 transactions.
        #expect(first.placed == 0 && first.unschedulable == 120)
        let afterFirst = try await repo.store.range(RangeRequest(key: ClusterRepository.taskKey("x"), countOnly: true), consistency: .serializable).revision
        #expect(afterFirst - before == 4)
        #expect(try await repo.tasks().tasks.filter { !$0.reason.isEmpty }.count == 100)

        // The node is cordoned: every reason now reads differently, but only the 20 tasks without
        // one are written before the refresh interval.
        var node = try await repo.node("n1")
        node.info.schedulable = false
        try await repo.save(node, expectRevision: node.revision)
        let revision = try await repo.store.range(RangeRequest(key: ClusterRepository.taskKey("x"), countOnly: true), consistency: .serializable).revision
        _ = try await round.run(&scheduler, now: 2_000)
        let afterSecond = try await repo.store.range(RangeRequest(key: ClusterRepository.taskKey("x"), countOnly: true), consistency: .serializable).revision
        #expect(afterSecond - revision == 1)
        #expect(try await repo.tasks().tasks.allSatisfy { !$0.reason.isEmpty })

        // After the refresh interval the stale ones are brought up to date (100 per round).
        _ = try await round.run(&scheduler, now: 7_000)
        let tasks = try await repo.tasks().tasks
        #expect(tasks.filter { $0.updatedAt == 7_000 }.count == 100)
        #expect(Set(tasks.map(\.reason)).count == 1, "all reasons now name the cordon")
    }

    @Test("a batch closes before its writes (tasks + distinct nodes) pass the transaction limit: 10 tasks spread over 10 nodes with a limit of 6 writes go in batches of 3")
    func batchesRespectTheWriteLimit() async throws {
        let repo = try await Self.cluster(nodes: 10)
        try await Self.submit(repo, count: 10)
        var round = SchedulingRound(repository: repo)
        round.limits.maxWritesPerTxn = 6
        var scheduler = Scheduler(defaultAlgorithm: .spread)
        let result = try await round.run(&scheduler, now: 100)
        // Spread sends each task to its own node: 3 tasks and their 3 nodes are 6 writes, and a
        // fourth task would bring 2 more, so batches close at 3: 3 + 3 + 3 + 1, 4 commits.
        #expect(result.placed == 10 && result.commits == 4 && result.conflicts == 0)
    }

    @Test("stale reasons are refreshed only by rounds that place nothing: a cluster in motion does not rewrite its waiting tasks")
    func noRefreshWhilePlacing() async throws {
        let repo = try await Self.cluster(nodes: 1, cpu: 1000)
        try await Self.submit(repo, count: 6)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        let round = SchedulingRound(repository: repo)
        // 2 of 6 fit (2 x 500 = 1,000 millicores); the 4 others get their first reason.
        let first = try await round.run(&scheduler, now: 1_000)
        #expect(first.placed == 2)
        #expect(try await repo.tasks().tasks.filter { $0.state == .pending && $0.updatedAt == 1_000 && !$0.reason.isEmpty }.count == 4)

        // Past the refresh interval a second node joins, cordoned, and a third with room for 2:
        // the round places 2 and the remaining 2 would read differently, but are not rewritten.
        let cordoned = NodeInfo(id: "n2", schedulable: false, capacity: Resources(cpu: 4000, memory: 8192))
        try await repo.save(NodeRecord(info: cordoned, address: "127.0.0.1", lastHeartbeat: 0), expectRevision: 0)
        let small = NodeInfo(id: "n3", capacity: Resources(cpu: 1000, memory: 8192))
        try await repo.save(NodeRecord(info: small, address: "127.0.0.1", lastHeartbeat: 0), expectRevision: 0)
        let second = try await round.run(&scheduler, now: 7_000)
        #expect(second.placed == 2)
        let waiting = try await repo.tasks().tasks.filter { $0.state == .pending }
        #expect(waiting.count == 2 && waiting.allSatisfy { $0.updatedAt == 1_000 })

        // A round that places nothing brings them up to date.
        let third = try await round.run(&scheduler, now: 7_001)
        #expect(third.placed == 0)
        let updated = try await repo.tasks().tasks.filter { $0.state == .pending }
        #expect(updated.allSatisfy { $0.updatedAt == 7_001 && $0.reason.contains("node-not-ready") })
    }
}

/// `TaskState.canMove` is binding: the repository refuses a write that moves a task between
/// states the state machine forbids, whatever the caller.
@Suite struct TransitionEnforcementTests {
    @Test("update, updateBatch, assign and release refuse forbidden transitions and records not read from the store")
    func refused() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        var pending = try await repo.create(TaskRecord(id: "t", spec: TaskSpec(name: "t", image: "alpine"), now: 0))
        // pending -> running skips assigned.
        var running = pending
        running.state = .running
        await #expect(throws: RepositoryError.invalidTransition("task t cannot move from pending to running")) { try await repo.update(running) }
        await #expect(throws: RepositoryError.invalidTransition("task t cannot move from pending to running")) { _ = try await repo.updateBatch([running]) }
        // A same-state write (a new reason) is fine.
        pending.reason = "waiting"
        pending = try await repo.update(pending)

        let node = try await repo.node("n1")
        let placement = PlacementRecord(node: "n1", score: 1, algorithm: .binPacking, filters: [])
        var (assigned, n1) = try await repo.assign(pending, to: node, placement: placement, now: 1)
        #expect(assigned.storedState == .assigned)
        // assigned -> completed is allowed (a task too quick to report running); then completed
        // cannot become running again, nor be assigned.
        var done = assigned
        done.state = .completed
        (done, n1) = try await repo.release(assigned, as: done, from: n1)
        var revived = done
        revived.state = .running
        await #expect(throws: RepositoryError.invalidTransition("task t cannot move from completed to running")) { try await repo.update(revived) }
        await #expect(throws: RepositoryError.invalidTransition("task t cannot move from completed to assigned")) {
            try await repo.assign(done, to: n1, placement: placement, now: 2)
        }
        // A record made up rather than read carries no stored state.
        var madeUp = TaskRecord(id: "t", spec: done.spec, state: .pending, now: 3)
        madeUp.revision = done.revision
        await #expect(throws: RepositoryError.invalidTransition("task t was not read from the store")) { try await repo.update(madeUp) }
        // What is stored is still the completed task.
        #expect(try await repo.task("t").state == .completed)
        assigned = try await repo.task("t")
        #expect(assigned.storedState == .completed)
    }
}
