import ClusterModel
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// A store that rewrites one node's record (same content, new revision) just before the
/// `bumpAt`-th transaction that guards that node: a task ending on it at the worst moment.
final class NodeBumpingStore: DelegatingStore {
    let base = MemoryStore()
    let node: String
    let bumpAt: Int
    private let guardedTransactions = Mutex(0)

    init(node: String, bumpAt: Int) {
        self.node = node
        self.bumpAt = bumpAt
    }

    func txn(_ request: TxnRequest) async throws -> TxnResponse {
        let key = ClusterRepository.nodeKey(node)
        if request.compares.contains(where: { $0.key == key }) {
            let count = guardedTransactions.withLock { n -> Int in
                n += 1
                return n
            }
            if count == bumpAt, let current = try await base.get(key) {
                try await base.put(key, current.value)
            }
        }
        return try await base.txn(request)
    }

}

@Suite struct PlanApplierTests {
    @Test("a refused batch is committed again node by node: a node that changes once more is re-read and holds back only its own tasks")
    func refusedBatchCommitsNodeByNode() async throws {
        let store = NodeBumpingStore(node: "n2", bumpAt: 3)
        let repo = ClusterRepository(store: store)
        for i in 1...3 {
            let info = NodeInfo(id: "n\(i)", capacity: Resources(cpu: 4000, memory: 8192))
            try await repo.save(NodeRecord(info: info, address: "127.0.0.1", lastHeartbeat: 0), expectRevision: 0)
        }
        try await SchedulingRoundTests.submit(repo, count: 6)
        let cache = ClusterCache()
        try await cache.fill(from: repo)
        // Behind the cache's back n1 changes, so the first batch (2 tasks on each node) is refused.
        let n1 = try await repo.node("n1")
        try await repo.save(n1, expectRevision: n1.revision)

        // Decided again on fresh nodes: one transaction per node. n2 changes just before its own
        // (n2's third guarded transaction: its creation, the first batch, its own), so n1's and
        // n3's commit, and n2 is re-read and its two tasks commit together. Committing the
        // retried batch whole would have been refused too and taken 6 single commits.
        var scheduler = Scheduler(defaultAlgorithm: .spread)
        let result = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 100)
        #expect(result.placed == 6)
        #expect(result.conflicts == 2)
        #expect(result.commits == 3)
        let tasks = try await repo.tasks().tasks
        #expect(tasks.allSatisfy { $0.state == .assigned })
        for i in 1...3 {
            let node = try await repo.node("n\(i)")
            let onIt = tasks.filter { $0.node == "n\(i)" }
            #expect(node.info.taskCount == onIt.count && node.info.allocated.cpu == 500 * onIt.count, "n\(i)")
        }
    }

    @Test("node transactions run at once stay exact: many nodes, every task placed once, every node's allocation the sum of its tasks")
    func manyNodesAtOnce() async throws {
        let store = NodeBumpingStore(node: "n07", bumpAt: 3)
        let repo = ClusterRepository(store: store)
        for i in 1...20 {
            let info = NodeInfo(id: String(format: "n%02d", i), capacity: Resources(cpu: 2000, memory: 8192))
            try await repo.save(NodeRecord(info: info, address: "127.0.0.1", lastHeartbeat: 0), expectRevision: 0)
        }
        try await SchedulingRoundTests.submit(repo, count: 70)
        let cache = ClusterCache()
        try await cache.fill(from: repo)
        let n01 = try await repo.node("n01")
        try await repo.save(n01, expectRevision: n01.revision)

        var scheduler = Scheduler(defaultAlgorithm: .spread)
        let result = try await SchedulingRound(repository: repo, cache: cache).run(&scheduler, now: 100)
        #expect(result.placed == 70)
        let tasks = try await repo.tasks().tasks
        #expect(tasks.allSatisfy { $0.state == .assigned && $0.epoch == 1 })
        for node in try await repo.nodes() {
            let onIt = tasks.filter { $0.node == node.info.id }
            #expect(node.info.taskCount == onIt.count && node.info.allocated.cpu == 500 * onIt.count, "\(node.info.id)")
            #expect(onIt.count <= 4, "\(node.info.id) over capacity")
        }
    }
}
