import ClusterModel
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// The counts and tasks-by-node a ``ClusterCache`` maintains must always equal what a full scan of
/// the store finds, whatever sequence of changes led there.
@Suite struct ClusterIndexTests {
    /// SplitMix64: seeded, so a failing sequence replays from the seed printed with the failure.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let nodeIDs = ["n1", "n2", "n3", "n4"]

    static func randomTask(_ id: String, revision: Int64, using random: inout Generator) -> TaskRecord {
        var t = TaskRecord(id: id, spec: TaskSpec(name: id, image: "alpine"), now: 1)
        t.state = TaskState.allCases.randomElement(using: &random)!
        t.node = Bool.random(using: &random) ? nodeIDs.randomElement(using: &random) : nil
        t.epoch = UInt64.random(in: 0...5, using: &random)
        t.revision = revision
        return t
    }

    static func randomNode(_ id: String, using random: inout Generator) -> NodeRecord {
        let info = NodeInfo(id: id, state: NodeState.allCases.randomElement(using: &random)!, schedulable: Bool.random(using: &random),
                            capacity: Resources(cpu: 4000, memory: 8192))
        return NodeRecord(info: info, address: "127.0.0.1:1", lastHeartbeat: 0)
    }

    /// Applies one random change straight to the store: a create, a change of state or node (a
    /// placement or release), a delete, a node written or removed, or a placement-like txn of a
    /// task and its node together. Some task writes are also recorded in the cache first, as the
    /// leader records its own writes before the watch brings them.
    static func step(_ store: MemoryStore, _ cache: ClusterCache, ids: inout [String], next: inout Int,
                     using random: inout Generator) async throws {
        let revision = try await store.range(RangeRequest(key: ClusterRepository.leaderKey, countOnly: true), consistency: .linearizable).revision
        switch Int.random(in: 0..<10, using: &random) {
        case 0...2:
            let id = "t\(next)"
            next += 1
            ids.append(id)
            try await store.put(ClusterRepository.taskKey(id), ClusterRepository.encode(randomTask(id, revision: 0, using: &random)))
        case 3...5 where !ids.isEmpty:
            let id = ids.randomElement(using: &random)!
            let task = randomTask(id, revision: revision + 1, using: &random)
            if Bool.random(using: &random) { cache.record(task) }
            try await store.put(ClusterRepository.taskKey(id), ClusterRepository.encode(task))
        case 6 where !ids.isEmpty:
            let id = ids.remove(at: Int.random(in: 0..<ids.count, using: &random))
            try await store.delete(ClusterRepository.taskKey(id))
        case 7:
            let id = nodeIDs.randomElement(using: &random)!
            try await store.put(ClusterRepository.nodeKey(id), ClusterRepository.encode(randomNode(id, using: &random)))
        case 8:
            try await store.delete(ClusterRepository.nodeKey(nodeIDs.randomElement(using: &random)!))
        default:
            guard let id = ids.randomElement(using: &random) else { return }
            let task = randomTask(id, revision: revision + 1, using: &random)
            let node = randomNode(task.node ?? "n1", using: &random)
            _ = try await store.txn(TxnRequest(compares: [], success: [
                .put(PutRequest(key: ClusterRepository.taskKey(id), value: ClusterRepository.encode(task))),
                .put(PutRequest(key: ClusterRepository.nodeKey(node.info.id), value: ClusterRepository.encode(node))),
            ]))
        }
    }

    @Test("counts and tasks by node equal a full scan after every step of a random sequence", arguments: [UInt64(1), 2, 3, 0xC0FFEE])
    func matchesScan(seed: UInt64) async throws {
        let store = MemoryStore()
        let repo = ClusterRepository(store: store)
        let cache = ClusterCache()
        let follower = Task { await cache.run(repository: repo) {} }
        defer { follower.cancel() }
        try await ClusterCacheTests.eventually("the first list") { cache.isSynced }
        var random = Generator(state: seed)
        var ids: [String] = []
        var next = 0
        for i in 0..<250 {
            try await Self.step(store, cache, ids: &ids, next: &next, using: &random)
            let tasks = try await repo.tasks(consistency: .linearizable)
            let nodes = try await repo.nodes(consistency: .linearizable)
            try await ClusterCacheTests.eventually("the cache at revision \(tasks.revision)") { cache.revision >= tasks.revision }
            var counts = try #require(cache.counts())
            counts.revision = tasks.revision
            let scan = ClusterCounts.scan(tasks: tasks.tasks, nodes: nodes, revision: tasks.revision)
            #expect(counts == scan, "seed \(seed), step \(i): maintained \(counts) != scan \(scan)")
            for node in Self.nodeIDs + ["nowhere"] {
                let scanned = try await repo.assignments(of: node, consistency: .linearizable).tasks.sorted { $0.id < $1.id }
                let cached = try #require(cache.assignments(of: node)).tasks
                #expect(cached.map(\.id) == scanned.map(\.id) && cached.map(\.epoch) == scanned.map(\.epoch),
                        "seed \(seed), step \(i), node \(node): cached \(cached.map(\.id)) != scan \(scanned.map(\.id))")
            }
            if counts != scan { return }
        }
    }

    @Test("a relist replaces the counts wholesale: nothing counted twice or left behind")
    func relist() async throws {
        let repo = try await SchedulingRoundTests.cluster(nodes: 2)
        try await SchedulingRoundTests.submit(repo, count: 10)
        let cache = ClusterCache()
        try await cache.fill(from: repo)
        try await cache.fill(from: repo)
        let tasks = try await repo.tasks()
        let scan = ClusterCounts.scan(tasks: tasks.tasks, nodes: try await repo.nodes(), revision: tasks.revision)
        #expect(cache.counts() == scan)
        #expect(cache.counts()?.tasks[.pending] == 10 && cache.counts()?.schedulableNodes == 2)
    }
}
