import Foundation
import Raft
import Synchronization
import Testing
@testable import Store
import TestGate

/// Three `RaftStore` replicas on an in-memory network with 10 ms ticks, each with a `LeaseExpirer`,
/// followers forwarding writes to the leader's store in process.
final class RaftStoreCluster: Sendable {
    let ids: [NodeID] = [1, 2, 3]
    let network = InMemoryNetwork()
    let time = ManualTime()
    let nodes: [NodeID: RaftNode<ContinuousClock>]
    let stores: [NodeID: RaftStore]
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let nodeTasks = Mutex<[NodeID: Task<Void, Never>]>([:])

    /// The stores by id, for the forwarding closures (which exist before the stores do).
    private final class Registry: Sendable {
        let stores = Mutex<[NodeID: RaftStore]>([:])
    }

    /// Breaks the next `count` forwarded calls AFTER the leader ran them: the reply is lost, as when
    /// the connection drops mid-flight, and the follower sees "unavailable" (ForwardClient maps it to
    /// `notLeader`, which `RaftStore` retries).
    final class LostReplies: Sendable {
        let remaining = Mutex(0)
        func lose(next count: Int) { remaining.withLock { $0 = count } }
        func take() -> Bool { remaining.withLock { if $0 > 0 { $0 -= 1; return true }; return false } }
    }

    /// - Parameter storage: each node's log storage (in memory unless a test needs to hold one).
    init(lostReplies: LostReplies? = nil, storage: (NodeID) -> any LogStorage = { _ in MemoryLogStorage() }) throws {
        let registry = Registry()
        var nodes: [NodeID: RaftNode<ContinuousClock>] = [:]
        var stores: [NodeID: RaftStore] = [:]
        let now = time.now
        for id in ids {
            var options = RaftNode<ContinuousClock>.Options()
            options.tickInterval = .milliseconds(10)
            let (machine, hub) = RaftStore.makeStateMachine()
            let node = try RaftNode(config: RaftConfig(id: id), storage: storage(id), machine: machine,
                                    transport: network.transport(for: id), bootstrap: ids,
                                    clock: ContinuousClock(), options: options)
            nodes[id] = node
            stores[id] = RaftStore(node: node, machine: machine, hub: hub, now: now, forward: { leader, command in
                guard let target = registry.stores.withLock({ $0[leader] }) else {
                    throw RaftNodeError.notLeader(leader: noNode)
                }
                let response = try await target.handleForwarded(command)
                if lostReplies?.take() == true { throw RaftNodeError.notLeader(leader: noNode) }
                return response
            })
        }
        registry.stores.withLock { $0 = stores }
        self.nodes = nodes
        self.stores = stores
        var started: [Task<Void, Never>] = []
        for id in ids {
            let node = nodes[id]!
            let run = Task { _ = try? await node.run() }
            nodeTasks.withLock { $0[id] = run }
            started.append(run)
            let expirer = LeaseExpirer(store: stores[id]!, now: now, interval: .milliseconds(10))
            started.append(Task { await expirer.run() })
        }
        tasks.withLock { $0 = started }
    }

    func shutdown() {
        tasks.withLock { for t in $0 { t.cancel() } }
    }

    /// Stops node `id` (its run is cancelled); the others go on.
    func stop(_ id: NodeID) {
        nodeTasks.withLock { $0[id]?.cancel() }
    }

    /// Polls until a node leads and every replica knows it; 45 s, as every in-memory cluster
    /// waits: at the start of a full run on CI's 2 cores ticks can wait seconds for a thread.
    func waitForLeader(timeout: Duration = .seconds(45)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var leaders: Set<NodeID> = []
            var leaderRole = false
            for (_, node) in nodes {
                let s = await node.status()
                leaders.insert(s.leader)
                if s.role == .leader { leaderRole = true }
            }
            if leaderRole, leaders.count == 1, let l = leaders.first, l != noNode { return l }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw RaftNodeError.timeout
    }

    func follower(of leader: NodeID) -> NodeID { ids.first { $0 != leader }! }
}

/// In-memory log storage whose saves can be held, as a slow disk holds a node's loop in its sync.
final class HeldLogStorage: LogStorage, @unchecked Sendable {
    private let inner = MemoryLogStorage()
    // Guards `holding` and `waiting`; a held save waits on it (bounded, so a failed test ends).
    private let condition = NSCondition()
    private var holding = false
    private var waiting = false

    func hold() { condition.withLock { holding = true } }

    func release() {
        condition.withLock {
            holding = false
            condition.broadcast()
        }
    }

    /// Whether a save is waiting for `release()`.
    var isHoldingASave: Bool { condition.withLock { waiting } }

    func load() throws -> PersistedState { try inner.load() }

    func save(_ batch: PersistBatch) throws {
        condition.withLock {
            let deadline = Date().addingTimeInterval(60)
            while holding && Date() < deadline {
                waiting = true
                _ = condition.wait(until: deadline)
            }
            waiting = false
        }
        try inner.save(batch)
    }
}

@Suite(.serialized, .heavy) struct RaftStoreConformanceTests {
    enum Target: Sendable { case leader, follower }

    /// A fresh cluster; the subject is the leader's or a follower's store.
    static func subject(_ target: Target) async throws -> (StoreConformance.Subject, RaftStoreCluster) {
        let cluster = try RaftStoreCluster()
        let leader = try await cluster.waitForLeader()
        let id = target == .leader ? leader : cluster.follower(of: leader)
        let subject = StoreConformance.Subject(
            store: cluster.stores[id]!, advanceClock: { cluster.time.advance($0) },
            shutdown: { cluster.shutdown() })
        return (subject, cluster)
    }

    @Test(arguments: StoreConformance.Scenario.allCases)
    func onLeader(_ scenario: StoreConformance.Scenario) async throws {
        try await StoreConformance.run(scenario) { try await Self.subject(.leader).0 }
    }

    @Test(arguments: StoreConformance.Scenario.allCases)
    func onFollower(_ scenario: StoreConformance.Scenario) async throws {
        try await StoreConformance.run(scenario) { try await Self.subject(.follower).0 }
    }

    @Test("a linearizable read on a follower right after a write sees it; replicas converge")
    func followerReadsItsLeadersWrite() async throws {
        let (_, cluster) = try await Self.subject(.leader)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let followers = cluster.ids.filter { $0 != leader }
        for i in 0..<20 {
            // Alternate the writer: the leader itself, then a follower forwarding to it.
            let writer = cluster.stores[i % 2 == 0 ? leader : followers[0]]!
            let put = try await writer.put(b("lin/\(i)"), b("v\(i)"))
            let read = try await cluster.stores[followers[1]]!.range(RangeRequest(key: b("lin/\(i)")), consistency: .linearizable)
            #expect(read.kvs.first?.value == b("v\(i)") && read.kvs.first?.modRevision == put.revision)
            #expect(read.revision >= put.revision)
        }
        // Every replica ends with the same state.
        for id in cluster.ids { _ = try await cluster.stores[id]!.range(RangeRequest(key: b("lin/")), consistency: .linearizable) }
        let lastRevision = cluster.stores[leader]!.machine.store.revision
        try await StoreConformance.eventually("replicas apply everything") {
            cluster.ids.allSatisfy { cluster.stores[$0]!.machine.store.revision == lastRevision }
        }
        let states = cluster.ids.map { cluster.stores[$0]!.machine.store }
        #expect(states.allSatisfy { $0 == states[0] })
    }

    @Test("writes through a follower survive a leader change")
    func writesRetryThroughElection() async throws {
        let (_, cluster) = try await Self.subject(.leader)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let follower = cluster.follower(of: leader)
        try await cluster.stores[follower]!.put(b("before"), b("1"))
        // Hand leadership away and write through the old leader at once: it must forward or retry.
        let target = cluster.ids.first { $0 != leader && $0 != follower }!
        try await cluster.nodes[leader]!.transferLeadership(to: target)
        let put = try await cluster.stores[leader]!.put(b("after"), b("2"))
        let read = try await cluster.stores[follower]!.get(b("after"))
        #expect(read?.modRevision == put.revision)
    }

    @Test("a follower whose loop is held in a disk sync still forwards writes: it knows its leader without asking its loop")
    func followerForwardsWhileItsLoopSyncs() async throws {
        let storages = Dictionary(uniqueKeysWithValues: [NodeID(1), 2, 3].map { ($0, HeldLogStorage()) })
        let cluster = try RaftStoreCluster(storage: { storages[$0]! })
        defer {
            for storage in storages.values { storage.release() }
            cluster.shutdown()
        }
        let leader = try await cluster.waitForLeader()
        let follower = cluster.follower(of: leader)
        let held = storages[follower]!
        held.hold()
        // A write through the leader commits with the other follower; this one's loop receives it
        // and waits in its save.
        try await cluster.stores[leader]!.put(b("first"), b("1"))
        try await StoreConformance.eventually("the follower's loop held in a save") { held.isHoldingASave }

        let store = cluster.stores[follower]!
        let first = try await withThrowingTaskGroup(of: PutResponse?.self) { group in
            group.addTask { try await store.put(b("second"), b("2")) }
            group.addTask {
                try await Task.sleep(for: .seconds(10))
                return nil
            }
            let first = try await group.next()!
            // Either way the loop may go on now (a put stuck behind it then finishes too).
            held.release()
            group.cancelAll()
            return first
        }
        let put = try #require(first, "the write through the follower waited for its held loop")
        let read = try await store.range(RangeRequest(key: b("second")), consistency: .linearizable)
        #expect(read.kvs.first?.modRevision == put.revision)
    }

    @Test("a follower whose node has stopped fails a write at once instead of forwarding it on its last hint")
    func stoppedFollowerRefusesWrites() async throws {
        let (_, cluster) = try await Self.subject(.leader)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let follower = cluster.follower(of: leader)
        #expect(cluster.nodes[follower]!.leaderHint == leader)
        cluster.stop(follower)
        try await StoreConformance.eventually("the stopped node forgets its leader") { cluster.nodes[follower]!.leaderHint == noNode }
        await #expect(throws: RaftNodeError.stopped) { try await cluster.stores[follower]!.put(b("after"), b("1")) }
        #expect(try await cluster.stores[leader]!.get(b("after")) == nil)
    }

    @Test("a forwarded batch is proposed together, each command answered in order; a follower refuses each")
    func forwardedBatch() async throws {
        let (_, cluster) = try await Self.subject(.leader)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let commands: [Command] = (0..<5).map { .put(PutRequest(key: b("batch/\($0)"), value: b("v\($0)"))) }
        let results = await cluster.stores[leader]!.handleForwarded(batch: commands)
        let revisions = try results.map { try $0.get().putResponse().revision }
        #expect(revisions.count == 5 && revisions == revisions.sorted() && Set(revisions).count == 5)
        for i in 0..<5 {
            let kv = try await cluster.stores[leader]!.get(b("batch/\(i)"))
            #expect(kv?.value == b("v\(i)") && kv?.modRevision == revisions[i])
        }
        #expect(await cluster.stores[leader]!.handleForwarded(batch: []).isEmpty)

        let follower = cluster.follower(of: leader)
        let refused = await cluster.stores[follower]!.handleForwarded(batch: commands)
        #expect(refused.count == 5)
        for result in refused {
            guard case .failure(RaftNodeError.notLeader) = result else {
                Issue.record("a follower answered a forwarded command with \(result)")
                continue
            }
        }
    }

    @Test("a new leader renews every lease before expiring any (leases stamped by the old leader's clock)")
    func newLeaderRenewsLeases() async throws {
        let (_, cluster) = try await Self.subject(.leader)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let store = cluster.stores[leader]!
        let lease = try await store.grantLease(ttl: 5, id: 0)
        try await store.put(b("leased"), b("v"), lease: lease.id)
        cluster.time.advance(4_000)
        let target = cluster.follower(of: leader)
        try await cluster.nodes[leader]!.transferLeadership(to: target)
        // The new leader's expirer proposes leaseRenewAll: a full 5 s from now again.
        try await StoreConformance.eventually("the new leader renews the lease") {
            try await cluster.stores[target]!.timeToLive(lease.id).ttl == 5
        }
        // 7 s after the grant: past the old expiry, inside the renewed one.
        cluster.time.advance(3_000)
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await cluster.stores[target]!.get(b("leased")) != nil)
        cluster.time.advance(3_000)
        try await StoreConformance.eventually("the lease expires under the new leader") {
            try await cluster.stores[leader]!.get(b("leased")) == nil
        }
    }
}
