import ClusterModel
import Hummingbird
import HummingbirdTesting
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// A store that notes the key of every range it serves, to tell a scrape that reads every task
/// from one that does not.
final class RangeRecordingStore: DelegatingStore {
    let base: MemoryStore
    private let ranges = Mutex<[[UInt8]]>([])

    init(base: MemoryStore) { self.base = base }

    var rangedKeys: [[UInt8]] { ranges.withLock { $0 } }
    func forget() { ranges.withLock { $0 = [] } }

    func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        ranges.withLock { $0.append(request.key) }
        return try await base.range(request, consistency: consistency)
    }
}

@Suite struct MetricsFromCacheTests {
    @Test("/metrics counts from the master's cache: the same numbers as a scan, without reading a task or node")
    func noScan() async throws {
        let store = RangeRecordingStore(base: MemoryStore())
        let repo = ClusterRepository(store: store)
        for (i, state) in [NodeState.ready, .ready, .down].enumerated() {
            var info = NodeInfo(id: "n\(i)", state: state, capacity: Resources(cpu: 4000, memory: 8192))
            info.schedulable = i != 1
            try await repo.save(NodeRecord(info: info, address: "10.0.0.1:7000", lastHeartbeat: 0), expectRevision: 0)
        }
        try await SchedulingRoundTests.submit(repo, count: 40)
        var scheduler = Scheduler(defaultAlgorithm: .binPacking)
        _ = try await SchedulingRound(repository: repo).run(&scheduler, now: 100)
        var t = try await repo.task("task-0039")
        t.state = .cancelled
        _ = try await repo.update(t)

        let cache = ClusterCache()
        let follower = Task { await cache.run(repository: repo) {} }
        defer { follower.cancel() }
        let revision = try await repo.tasks(consistency: .linearizable).revision
        try await ClusterCacheTests.eventually("the cache at the last write") { cache.isSynced && cache.revision >= revision }

        let api = OrchestratorAPI(repository: repo, status: FakeStatus(store: store), logs: FakeLogs(logs: [:]), cache: cache)
        store.forget()
        let text = try await Application(router: api.buildRouter()).test(.router) { client in
            let r = try await client.execute(uri: "/metrics", method: .get)
            #expect(r.status == .ok)
            return String(buffer: r.body)
        }
        let read = store.rangedKeys
        #expect(!read.contains { $0.starts(with: ClusterRepository.taskPrefix) || $0.starts(with: ClusterRepository.nodePrefix) },
                "the scrape read records: \(read.map { String(decoding: $0, as: UTF8.self) })")

        let scan = ClusterCounts.scan(tasks: try await repo.tasks().tasks, nodes: try await repo.nodes(), revision: revision)
        let lines = Set(text.split(separator: "\n").map(String.init))
        for state in TaskState.allCases {
            #expect(lines.contains("orchestrator_tasks{state=\"\(state.rawValue)\"} \(scan.tasks[state]!)"), "tasks \(state)")
        }
        for state in NodeState.allCases {
            #expect(lines.contains("orchestrator_nodes{state=\"\(state.rawValue)\"} \(scan.nodes[state]!)"), "nodes \(state)")
        }
        #expect(lines.contains("orchestrator_nodes_schedulable 1"))
        #expect(lines.contains("orchestrator_store_revision \(revision)"))
        // One node ready and schedulable (n1 is cordoned, n2 down): 4000 / 500 = 8 placed; one of
        // the 32 left pending cancelled.
        #expect(scan.tasks[.assigned] == 8 && scan.tasks[.pending] == 31 && scan.tasks[.cancelled] == 1)
    }
}
