import ClusterModel
import ClusterProto
import GRPCCore
import Logging
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// An assignment stream's writer that keeps every set it is given.
final class RecordedSets: RPCWriterProtocol, Sendable {
    private let sets = Mutex<[Orchestrator_V1_AssignmentSet]>([])
    var all: [Orchestrator_V1_AssignmentSet] { sets.withLock { $0 } }
    var last: Orchestrator_V1_AssignmentSet? { sets.withLock { $0.last } }
    func write(_ element: Orchestrator_V1_AssignmentSet) async throws { sets.withLock { $0.append(element) } }
    func write(contentsOf elements: some Sequence<Orchestrator_V1_AssignmentSet>) async throws {
        for e in elements { try await write(e) }
    }
}

/// Assignment streams served from the master's ``ClusterCache`` (tasks indexed by node) rather
/// than a read of every task: the same sets, in the same order, with nothing missed.
@Suite struct AssignmentStreamCacheTests {
    /// A worker service over a MemoryStore with a running cache, two joined workers, and `tasks`
    /// tasks placed across them.
    static func setUp(tasks: Int) async throws -> (WorkerService, ClusterRepository, ClusterCache, credentials: [String: String], Task<Void, Never>) {
        let repo = ClusterRepository(store: MemoryStore())
        let cache = ClusterCache()
        let follower = Task { await cache.run(repository: repo) {} }
        let service = WorkerService(repository: repo, joinToken: "secret", now: { 1_000 }, logger: Logger(label: "test"), cache: cache)
        var credentials: [String: String] = [:]
        for id in ["w1", "w2"] {
            credentials[id] = try await service.join(request: WorkerServiceTests.request(token: "secret", id: id), context: .testing).nodeCredential
        }
        try await SchedulingRoundTests.submit(repo, count: tasks, cpu: 100)
        var scheduler = Scheduler(defaultAlgorithm: .roundRobin)
        let result = try await SchedulingRound(repository: repo).run(&scheduler, now: 2_000)
        #expect(result.placed == tasks)
        try await ClusterCacheTests.eventually("the cache to be synced") { cache.isSynced }
        return (service, repo, cache, credentials, follower)
    }

    /// The set as the worker sees it: (task id, epoch, stop) in order.
    static func contents(_ set: Orchestrator_V1_AssignmentSet) -> [String] {
        set.assignments.map { "\($0.taskID)@\($0.epoch)\($0.stop ? " stop" : "")" }
    }

    static func scan(_ repo: ClusterRepository, _ node: String) async throws -> [String] {
        try await repo.assignments(of: node, consistency: .linearizable).tasks.sorted { $0.id < $1.id }
            .map { "\($0.id)@\($0.epoch)\($0.moving != nil ? " stop" : "")" }
    }

    @Test("the first set equals the node's tasks in a full scan; later sets follow every change, in order")
    func firstSetAndChanges() async throws {
        let (service, repo, cache, credentials, follower) = try await Self.setUp(tasks: 30)
        defer { follower.cancel() }
        let sets = RecordedSets()
        let request = Orchestrator_V1_AssignmentsRequest.with { $0.nodeID = "w1"; $0.nodeCredential = credentials["w1"]! }
        let stream = Task { try await service.assignments(request: request, response: RPCWriter(wrapping: sets), context: .testing) }
        defer { stream.cancel() }
        try await poll(timeout: .seconds(60), "the first set") { sets.all.count == 1 }
        let first = try #require(sets.all.first)
        #expect(Self.contents(first) == (try await Self.scan(repo, "w1")))
        #expect(first.assignments.count == 15)
        // Served from the cache, not from a watch of every task.
        #expect(cache.assignmentSubscribers == 1)

        // The worker reports one task done: it leaves the set. A new task placed on w1 joins it.
        let done = first.assignments[3]
        _ = try await service.reportStatus(request: .with {
            $0.nodeID = "w1"; $0.nodeCredential = credentials["w1"]!
            $0.taskID = done.taskID; $0.epoch = done.epoch; $0.state = .completed
        }, context: .testing)
        try await repo.create(TaskRecord(id: "task-late", spec: TaskSpec(name: "late", image: "alpine", resources: Resources(cpu: 100, memory: 64)), now: 3))
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 3_000)
        let expected = try await Self.scan(repo, "w1")
        try await poll(timeout: .seconds(60), "the set to catch up with the store") { sets.last.map(Self.contents) == expected }
        let revisions = sets.all.map(\.revision)
        #expect(revisions == revisions.sorted() && Set(revisions).count == revisions.count, "sets out of order: \(revisions)")
        #expect(!Self.contents(sets.last!).contains { $0.hasPrefix(done.taskID + "@") })
    }

    @Test("a stream waits for the cache to reach the node record it read; a cache that never gets there is not used")
    func barrier() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        let cache = ClusterCache()
        // Not synced: no stream.
        #expect(await cache.assignmentUpdates(of: "n1", atLeast: 0, timeout: .milliseconds(20)) == nil)
        try await cache.fill(from: repo)
        #expect(await cache.assignmentUpdates(of: "n1", atLeast: cache.revision + 1, timeout: .milliseconds(20)) == nil)
        let stream = try #require(await cache.assignmentUpdates(of: "n1", atLeast: cache.revision, timeout: .milliseconds(20)))
        var iterator = stream.makeAsyncIterator()
        #expect(await iterator.next()?.tasks == [])
    }

    @Test("after a relist (the watch failed), every stream is sent its node's set as listed")
    func relistResends() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 1)
        try await SchedulingRoundTests.submit(repo, count: 2)
        let cache = ClusterCache()
        try await cache.fill(from: repo)
        let stream = try #require(await cache.assignmentUpdates(of: "n1", atLeast: 0))
        var iterator = stream.makeAsyncIterator()
        #expect(await iterator.next()?.tasks == [])
        // Placed while the cache was not following: only the relist can tell the stream.
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 100)
        try await cache.fill(from: repo)
        let next = try #require(await iterator.next())
        #expect(next.tasks.map(\.id) == ["task-0000", "task-0001"])
        #expect(next.revision == cache.revision)
    }

    @Test("many epochs in a row: the stream ends on the latest, never goes back")
    func rapidEpochs() async throws {
        let (service, repo, cache, credentials, follower) = try await Self.setUp(tasks: 2)
        defer { follower.cancel() }
        let sets = RecordedSets()
        let request = Orchestrator_V1_AssignmentsRequest.with { $0.nodeID = "w1"; $0.nodeCredential = credentials["w1"]! }
        let stream = Task { try await service.assignments(request: request, response: RPCWriter(wrapping: sets), context: .testing) }
        defer { stream.cancel() }
        try await poll(timeout: .seconds(60), "the first set") { sets.all.count == 1 }
        let id = try #require(sets.all.first?.assignments.first?.taskID)
        for _ in 0..<40 {
            // Back to pending and placed again on w1: a new epoch each time.
            var task = try await repo.task(id, consistency: .linearizable)
            let node = try await repo.node("w1", consistency: .linearizable)
            var released = task
            released.state = .pending
            released.node = nil
            (task, _) = try await repo.release(task, as: released, from: node)
            let placement = PlacementRecord(node: "w1", score: 1, algorithm: .binPacking, filters: [])
            _ = try await repo.assign(task, to: try await repo.node("w1", consistency: .linearizable), placement: placement, now: 5)
        }
        let expected = try await Self.scan(repo, "w1")
        try await poll(timeout: .seconds(60), "the latest epoch") { sets.last.map(Self.contents) == expected }
        let epochs = sets.all.compactMap { $0.assignments.first { $0.taskID == id }?.epoch }
        #expect(epochs == epochs.sorted(), "epochs went back: \(epochs)")
        #expect(cache.assignmentSubscribers == 1)
    }
}
