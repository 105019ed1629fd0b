import Synchronization
import Testing
@testable import Raft

/// A cluster of `RaftNode`s whose membership changes: nodes can be added after the start, each
/// node's storage outlives it (restart), and every membership view a node reports is recorded.
final class MemberCluster: Sendable {
    typealias Node = RaftNode<ContinuousClock>
    let network = InMemoryNetwork()
    private struct State {
        var nodes: [NodeID: Node] = [:]
        var machines: [NodeID: RecordingMachine] = [:]
        var storages: [NodeID: MemoryLogStorage] = [:]
        var tasks: [NodeID: Task<Void, any Error>] = [:]
        var views: [NodeID: MembershipView] = [:]
    }
    private let state = Mutex(State())
    let snapshotThreshold: UInt64
    let tick: Duration

    /// Founding members `ids`, whose context is "addr-<id>".
    init(_ ids: [NodeID], snapshotThreshold: UInt64 = 10_000, tick: Duration = .milliseconds(10)) throws {
        self.snapshotThreshold = snapshotThreshold
        self.tick = tick
        let contexts = Dictionary(uniqueKeysWithValues: ids.map { ($0, Self.context($0)) })
        for id in ids { try start(id, bootstrap: ids, contexts: contexts) }
    }

    static func context(_ id: NodeID) -> [UInt8] { Array("addr-\(id)".utf8) }

    /// Starts `id` on its storage (a new, empty one the first time).
    func start(_ id: NodeID, bootstrap: [NodeID] = [], contexts: [NodeID: [UInt8]] = [:]) throws {
        var options = Node.Options()
        options.tickInterval = tick
        options.snapshotThreshold = snapshotThreshold
        options.onMembershipChange = { [weak self] view in self?.state.withLock { $0.views[id] = view } }
        let (storage, machine) = state.withLock { s in
            let storage = s.storages[id] ?? MemoryLogStorage()
            s.storages[id] = storage
            let machine = RecordingMachine()
            s.machines[id] = machine
            s.views[id] = nil  // a restart must report its own view, not show the last run's
            return (storage, machine)
        }
        let node = try Node(config: RaftConfig(id: id), storage: storage, machine: machine,
                            transport: network.transport(for: id), bootstrap: bootstrap, bootstrapContexts: contexts,
                            clock: ContinuousClock(), options: options)
        state.withLock { s in
            s.nodes[id] = node
            s.tasks[id] = Task { try await node.run() }
        }
    }

    func node(_ id: NodeID) -> Node { state.withLock { $0.nodes[id]! } }
    func machine(_ id: NodeID) -> RecordingMachine { state.withLock { $0.machines[id]! } }
    func view(_ id: NodeID) -> MembershipView? { state.withLock { $0.views[id] } }

    /// Stops `id`; its storage is kept for a restart.
    func stop(_ id: NodeID) async {
        let task = state.withLock { $0.tasks.removeValue(forKey: id) }
        task?.cancel()
        _ = await task?.result
    }

    func stopAll() {
        state.withLock { for t in $0.tasks.values { t.cancel() } }
    }

    /// Polls until one of `among` leads, within `timeout`. Generous: in the first seconds of a full
    /// run every suite starts at once on 2 cores, and an in-memory cluster's ticks can wait more
    /// than 10 s for a thread (CI saw every in-memory cluster time out together at 12 s).
    func waitForLeader(among: [NodeID], timeout: Duration = .seconds(45)) async throws -> NodeID {
        try await poll(timeout) {
            for id in among where await self.node(id).status().role == .leader { return id }
            return nil
        }
    }

    /// Polls `condition` until it gives a value, within `timeout`.
    func poll<T>(_ timeout: Duration = .seconds(45), _ condition: () async throws -> T?) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let value = try await condition() { return value }
            guard ContinuousClock.now < deadline else { throw RaftNodeError.timeout }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Proposes through whichever of `among` leads, retrying through elections.
    func write(_ text: String, among: [NodeID]) async throws {
        try await poll { () async throws -> Void? in
            guard let leader = try? await self.waitForLeader(among: among, timeout: .seconds(2)) else { return nil }
            do {
                _ = try await self.node(leader).propose(Array(text.utf8))
                return ()
            } catch RaftNodeError.notLeader, RaftNodeError.proposalDropped, RaftNodeError.timeout {
                return nil
            }
        }
    }
}

@Suite struct MembershipTests {
    // MARK: Pure parts

    @Test("the member table follows membership entries: added with its context, kept on promotion, dropped on removal")
    func memberTableApply() {
        var table = MemberTable()
        table.apply(ConfChange(kind: .addLearner, node: 4, context: [1, 2]))
        #expect(table.contexts == [4: [1, 2]])
        table.apply(ConfChange(kind: .promote, node: 4))
        #expect(table.contexts == [4: [1, 2]], "a promotion without a context keeps the one from the add")
        table.apply(ConfChange(kind: .promote, node: 4, context: [3]))
        #expect(table.contexts == [4: [3]])
        table.apply(ConfChange(kind: .removeNode, node: 4))
        #expect(table.contexts.isEmpty)
    }

    @Test("the member table and the snapshot envelope round-trip; a bare image and damaged tables read as bare images")
    func envelopeRoundTrip() {
        let table = MemberTable(contexts: [1: Array("a".utf8), 7: [], 9_007_199_254_740_993: [0, 255]])
        #expect(MemberTable(decoding: table.encoded[...]) == table)
        let wrapped = SnapshotEnvelope.wrap(members: table, image: [9, 8, 7])
        let (members, image) = SnapshotEnvelope.unwrap(wrapped)
        #expect(members == table)
        #expect(image == [9, 8, 7])
        // An image from before envelopes existed is handed to the state machine unchanged.
        #expect(SnapshotEnvelope.unwrap([1, 2, 3]).members == nil)
        #expect(SnapshotEnvelope.unwrap([1, 2, 3]).image == [1, 2, 3])
        // A truncated table is not taken for one.
        let truncated = Array(wrapped.prefix(SnapshotEnvelope.magic.count + 10))
        #expect(SnapshotEnvelope.unwrap(truncated).members == nil)
        #expect(MemberTable(decoding: table.encoded.dropLast()) == nil)
    }

    @Test("bootstrap writes each founding member's context into its membership entry, the same on every member")
    func bootstrapContexts() {
        let contexts: [NodeID: [UInt8]] = [1: [1], 2: [2], 3: [3]]
        let a = Raft(config: RaftConfig(id: 1), persisted: PersistedState(), bootstrap: [3, 1, 2], bootstrapContexts: contexts)
        let b = Raft(config: RaftConfig(id: 2), persisted: PersistedState(), bootstrap: [1, 2, 3], bootstrapContexts: contexts)
        let entries = Array(a.log.unstableEntries)
        #expect(entries == Array(b.log.unstableEntries))
        #expect(entries.map { ConfChange(decoding: $0.data) } == [
            ConfChange(kind: .addNode, node: 1, context: [1]), ConfChange(kind: .addNode, node: 2, context: [2]),
            ConfChange(kind: .addNode, node: 3, context: [3]),
        ])
    }

    @Test("§4.2.2: the leader sends a removed follower the commit of its removal before it stops replicating to it, so the follower applies it")
    func removedFollowerLearnsItsRemoval() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .removeNode, node: 3))
        net.stabilize()
        #expect(net[1].confState.voters == [1, 2])
        #expect(net[3].confState.voters == [1, 2], "node 3 applied its own removal")
        #expect(net[3].commitIndex == net[1].commitIndex)
    }

    // MARK: Nodes on an in-memory network

    @Test("§4.2.1: a learner added with its context catches up from a snapshot of the compacted log, learns every member's context from it, and is promoted")
    func learnerCatchesUpFromSnapshotAndIsPromoted() async throws {
        let cluster = try MemberCluster([1, 2, 3], snapshotThreshold: 50)
        defer { cluster.stopAll() }
        let leader = try await cluster.waitForLeader(among: [1, 2, 3])
        for i in 0..<120 { try await cluster.write("v\(i)", among: [1, 2, 3]) }
        try await cluster.poll { await cluster.node(leader).status().snapshotIndex > 0 ? () : nil }
        // The bootstrap entries that carried the founding contexts are compacted away now.
        #expect(await cluster.node(leader).status().snapshotIndex > 3)
        try cluster.start(4)
        try await cluster.node(leader).changeMembership(ConfChange(kind: .addLearner, node: 4, context: MemberCluster.context(4)))
        try await cluster.poll { cluster.machine(4).values.count == 120 ? () : nil }
        let learnerView = try await cluster.poll { () -> MembershipView? in
            guard let v = cluster.view(4), v.confState.learners == [4] else { return nil }
            return v
        }
        #expect(learnerView.members.contexts == [1: MemberCluster.context(1), 2: MemberCluster.context(2),
                                                 3: MemberCluster.context(3), 4: MemberCluster.context(4)])
        #expect(await cluster.node(4).status().snapshotIndex > 0, "the learner caught up through a snapshot")
        #expect(await cluster.node(4).status().role == .follower, "a learner never campaigns")
        try await cluster.node(leader).changeMembership(ConfChange(kind: .promote, node: 4))
        try await cluster.poll { cluster.view(4)?.confState.voters == [1, 2, 3, 4] ? () : nil }
        #expect(cluster.view(4)?.members.contexts[4] == MemberCluster.context(4), "promotion keeps the context")
        try await cluster.write("after", among: [1, 2, 3, 4])
        try await cluster.node(4).linearizableRead()
        #expect(cluster.machine(4).values.last == Array("after".utf8))
    }

    @Test("§4.1: a second membership change is refused while the first is not applied")
    func oneChangeAtATime() async throws {
        // Slow ticks: the leader cut off below steps down (check quorum) only after a second or two.
        let cluster = try MemberCluster([1, 2, 3], tick: .milliseconds(100))
        defer { cluster.stopAll() }
        let leader = try await cluster.waitForLeader(among: [1, 2, 3])
        try await cluster.write("x", among: [1, 2, 3])  // the leader's term has an applied entry
        // With both followers cut off, the first change cannot commit.
        for other in [1, 2, 3] as [NodeID] where other != leader { cluster.network.cut(leader, other) }
        let first = Task { try await cluster.node(leader).changeMembership(ConfChange(kind: .addLearner, node: 4)) }
        try await cluster.poll { await cluster.node(leader).status().lastIndex > cluster.node(leader).status().commitIndex ? () : nil }
        await #expect(throws: RaftNodeError.rejected("another membership change is in progress")) {
            try await cluster.node(leader).changeMembership(ConfChange(kind: .addLearner, node: 5))
        }
        cluster.network.healAll()
        _ = try? await first.value
        let members = await cluster.node(leader).membership().confState.members
        #expect(!members.contains(5))
    }

    @Test("removing a follower: it applies its removal and stops; the rest keep committing; the table survives restarts")
    func removeFollower() async throws {
        let cluster = try MemberCluster([1, 2, 3])
        defer { cluster.stopAll() }
        let leader = try await cluster.waitForLeader(among: [1, 2, 3])
        let victim = ([1, 2, 3] as [NodeID]).first { $0 != leader }!
        let rest = ([1, 2, 3] as [NodeID]).filter { $0 != victim }
        try await cluster.write("before", among: rest)
        try await cluster.node(leader).changeMembership(ConfChange(kind: .removeNode, node: victim))
        let view = try await cluster.poll { cluster.view(victim)?.removed == true ? cluster.view(victim) : nil }
        #expect(!view.confState.members.contains(victim))
        await #expect(throws: RaftNodeError.rejected("this member was removed from the cluster")) {
            _ = try await cluster.node(victim).propose([1])
        }
        try await cluster.write("after", among: rest)
        #expect(await cluster.node(leader).membership().members.contexts.keys.sorted() == rest)
        // A restart replays the log (or restores the snapshot) and comes back with the same table.
        let survivor = rest.first { $0 != leader }!
        await cluster.stop(survivor)
        try cluster.start(survivor)
        try await cluster.poll { cluster.view(survivor)?.members.contexts.keys.sorted() == rest ? () : nil }
        // The removed server restarted stays removed: it replays its own removal.
        await cluster.stop(victim)
        try cluster.start(victim)
        try await cluster.poll { cluster.view(victim)?.removed == true ? () : nil }
    }

    @Test("§4.2.2: the removed leader steps down once its removal commits; the others elect a leader and keep committing")
    func removeLeader() async throws {
        let cluster = try MemberCluster([1, 2, 3])
        defer { cluster.stopAll() }
        let leader = try await cluster.waitForLeader(among: [1, 2, 3])
        try await cluster.write("before", among: [1, 2, 3])
        try await cluster.node(leader).changeMembership(ConfChange(kind: .removeNode, node: leader))
        let rest = ([1, 2, 3] as [NodeID]).filter { $0 != leader }
        #expect(await cluster.node(leader).status().role == .follower)
        #expect(await cluster.node(leader).membership().removed)
        let next = try await cluster.waitForLeader(among: rest)
        try await cluster.write("after", among: rest)
        #expect(await cluster.node(next).membership().confState.voters == rest)
        try await cluster.node(next).linearizableRead()
        #expect(cluster.machine(next).values == [Array("before".utf8), Array("after".utf8)])
        #expect(await cluster.node(leader).status().role == .follower, "the removed leader never campaigns again")
    }

    @Test("the member table is in the node's own snapshots: restarted from a compacted log, a member still knows every context")
    func tableSurvivesCompactionAndRestart() async throws {
        let cluster = try MemberCluster([1, 2, 3], snapshotThreshold: 20)
        defer { cluster.stopAll() }
        for i in 0..<60 { try await cluster.write("v\(i)", among: [1, 2, 3]) }
        try await cluster.poll { await cluster.node(2).status().snapshotIndex > 3 ? () : nil }
        await cluster.stop(2)
        try cluster.start(2)
        let view = try await cluster.poll { cluster.view(2) }
        #expect(view.members.contexts == [1: MemberCluster.context(1), 2: MemberCluster.context(2), 3: MemberCluster.context(3)])
    }
}
