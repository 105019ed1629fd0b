import Testing
@testable import Raft

/// One test per rule of the Raft paper and thesis, on a synchronous network of pure cores.
@Suite struct RaftRulesTests {
    @Test("§5.2: a follower that hears from no leader starts an election and a majority elects it")
    func electionOnTimeout() {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        #expect(net[1].role == .leader)
        #expect(net[2].leader == 1 && net[3].leader == 1)
        #expect(net[1].term == 2, "bootstrap is term 1; the first election is term 2")
    }

    @Test("§5.2: a server grants at most one vote per term")
    func oneVotePerTerm() throws {
        var net = TestNetwork([1, 2, 3])
        try net.nodes[3]!.step(Message(kind: .vote, from: 1, to: 3, term: 5, logTerm: 1, index: 3))
        try net.nodes[3]!.step(Message(kind: .vote, from: 2, to: 3, term: 5, logTerm: 1, index: 3))
        let replies = net.nodes[3]!.ready().messages.filter { $0.kind == .voteResponse }
        #expect(replies.count == 2)
        #expect(replies[0].to == 1 && !replies[0].reject)
        #expect(replies[1].to == 2 && replies[1].reject)
        #expect(net[3].vote == 1)
    }

    @Test("§5.4.1: a vote is refused to a candidate whose log is less up-to-date")
    func upToDateLogRule() throws {
        // Without check-quorum a follower has no lease and considers every vote request.
        var net = TestNetwork([1, 2, 3]) { $0.checkQuorum = false }
        net.elect(1)
        try net.propose(1, "x")
        // Node 3 is behind (index 3 of term 1, while the others have term-2 entries).
        try net.nodes[2]!.step(Message(kind: .vote, from: 3, to: 2, term: 10, logTerm: 1, index: 3))
        let reply = net.nodes[2]!.ready().messages.first { $0.kind == .voteResponse }
        #expect(reply?.reject == true)
    }

    @Test("§5.1: a message with a higher term turns a leader into a follower of that term")
    func higherTermStepsDown() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.step(Message(kind: .append, from: 2, to: 1, term: 9, logTerm: 0, index: 0))
        #expect(net[1].role == .follower)
        #expect(net[1].term == 9)
        #expect(net[1].leader == 2)
    }

    @Test("§5.1: messages of a stale term are ignored and the sender learns the current term")
    func staleTermIgnored() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let term = net[2].term
        let before = net[2].lastIndex
        try net.nodes[2]!.step(Message(kind: .append, from: 3, to: 2, term: term - 1, logTerm: term - 1, index: before,
                                      entries: [Entry(term: term - 1, index: before + 1, data: [1])]))
        #expect(net[2].lastIndex == before)
        let reply = net.nodes[2]!.ready().messages.first { $0.to == 3 }
        #expect(reply?.kind == .appendResponse && reply?.term == term)
    }

    @Test("§5.3: a follower refuses entries that do not follow a matching entry, then truncates conflicts")
    func consistencyCheckAndTruncation() throws {
        var net = TestNetwork([1, 2, 3])
        let t = net[2].term
        // No entry at index 7: refuse.
        try net.nodes[2]!.step(Message(kind: .append, from: 1, to: 2, term: t + 1, logTerm: t + 1, index: 7,
                                      entries: [Entry(term: t + 1, index: 8, data: [1])]))
        #expect(net[2].lastIndex == 3)
        #expect(net.nodes[2]!.ready().messages.last?.reject == true)
        net.stabilize()
        // Uncommitted entries 4..5 of term 5, then a leader of term 6 overwrites index 5.
        try net.nodes[2]!.step(Message(kind: .append, from: 1, to: 2, term: 5, logTerm: 1, index: 3,
                                      entries: [Entry(term: 5, index: 4, data: [4]), Entry(term: 5, index: 5, data: [5])]))
        try net.nodes[2]!.step(Message(kind: .append, from: 1, to: 2, term: 6, logTerm: 5, index: 4,
                                      entries: [Entry(term: 6, index: 5, data: [50])]))
        #expect(net[2].lastIndex == 5)
        #expect(net[2].log.term(at: 5) == 6)
        #expect(net[2].log.term(at: 4) == 5)
    }

    @Test("§5.3 fast backtracking: one rejection skips a whole term of conflicting entries")
    func fastBacktracking() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        // Node 3 misses 30 entries of the leader's term.
        net.isolate(3)
        for i in 0..<30 { try net.propose(1, "e\(i)") }
        net.heal()
        net.delivered = []
        try net.propose(1, "last")
        let rejections = net.delivered.filter { $0.kind == .appendResponse && $0.reject && $0.from == 3 }
        // One rejection per conflicting term, not one per missing entry (30 here).
        #expect(rejections.count <= 2, "the follower rejected \(rejections.count) times")
        #expect(net[3].lastIndex == net[1].lastIndex)
    }

    @Test("§5.4.2: a leader commits an entry of its own term by counting replicas, never an older one alone")
    func commitOnlyCurrentTermByCounting() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let noOpIndex = net[1].lastIndex
        #expect(net[1].commitIndex == noOpIndex, "the leader's no-op commits once a majority holds it")
        // Leader 1 appends an entry that only it holds, then loses leadership.
        net.isolate(1)
        _ = try net.nodes[1]!.propose([[9]])
        _ = net.process(1)
        let oldIndex = net[1].lastIndex
        let oldTerm = net[1].term
        #expect(net[1].commitIndex < oldIndex)
        // A new leader among 2 and 3, and then 1 comes back with a stale entry that is overwritten.
        net.elect(2)
        #expect(net[2].role == .leader)
        net.heal()
        try net.propose(2, "new")
        // The next heartbeat reaches node 1, which steps down and is repaired.
        net.tick(2, times: net[2].config.heartbeatTick)
        #expect(net[1].role == .follower)
        #expect(net[1].log.term(at: oldIndex) != oldTerm, "the uncommitted entry of the old term is replaced")
        #expect(net.applied[1] == net.applied[2])
    }

    @Test("§9.6 pre-vote + §6.2 leases: a server rejoining after a partition does not disrupt the leader")
    func preVotePreventsDisruption() {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let term = net[1].term
        net.isolate(3)
        // Node 3 times out again and again on its own side: pre-votes fail, its term stays.
        for _ in 0..<5 { net.electionTimeout(3) }
        #expect(net[3].term == term)
        net.heal()
        net.electionTimeout(3)
        #expect(net[1].role == .leader)
        #expect(net[1].term == term)
    }

    @Test("§6.2 check-quorum: a leader that hears from no quorum for an election timeout steps down")
    func checkQuorumStepsDown() {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        net.isolate(1)
        // The first check still sees the activity from before the partition; the second cannot.
        net.tick(1, times: 2 * net[1].config.electionTick)
        #expect(net[1].role == .follower)
    }

    @Test("a broken connection to the leader starts an election at once, in id order, without a split vote")
    func unreachableLeaderFastElection() {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let term = net[1].term
        net.isolate(1)
        // Both followers learn at the same moment that the leader's connection broke.
        net.nodes[3]!.reportUnreachable(1)
        net.nodes[2]!.reportUnreachable(1)
        net.stabilize()
        #expect(net[2].role == .leader, "the lowest id campaigns at once and wins")
        #expect(net[2].term == term + 1, "one election, no split vote")
        #expect(net[3].leader == 2)
    }

    @Test("an unreachable notice about a live leader does not disturb the cluster")
    func unreachableNoticeWithLiveLeader() {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let term = net[1].term
        net.nodes[2]!.reportUnreachable(1)
        net.stabilize()
        // Node 3 still hears from the leader, so it refuses node 2's pre-vote: no new term.
        #expect(net[1].role == .leader)
        #expect(net[1].term == term && net[2].term == term)
    }

    @Test("§6.4 ReadIndex: a read is released only after a quorum confirms the leader")
    func readIndexNeedsQuorum() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        net.isolate(1)
        try net.nodes[1]!.readIndex(context: [1])
        net.stabilize()
        #expect(net.readStates[1, default: []].isEmpty)
        net.heal()
        try net.nodes[1]!.readIndex(context: [2])
        net.stabilize()
        let contexts = net.readStates[1, default: []].map(\.context)
        #expect(contexts == [[1], [2]], "a later quorum confirms earlier reads too")
        #expect(net.readStates[1]!.allSatisfy { $0.index == net[1].commitIndex })
    }

    @Test("§6.4 ReadIndex on a follower goes through the leader")
    func followerReadIndex() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.propose(1, "v")
        try net.nodes[3]!.readIndex(context: [7])
        net.stabilize()
        #expect(net.readStates[3]?.first == ReadState(index: net[1].commitIndex, context: [7]))
    }

    @Test("§3.10 leadership transfer: the target catches up, gets TimeoutNow and wins at once")
    func leadershipTransfer() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.propose(1, "before")
        try net.nodes[1]!.transferLeader(to: 3)
        net.stabilize()
        #expect(net[3].role == .leader)
        #expect(net[1].role == .follower)
        #expect(net[3].term == net[1].term)
    }

    @Test("§4.1: add a learner, let it catch up, promote it; one change at a time")
    func membershipChange() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        net.addEmpty(4)
        _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .addLearner, node: 4))
        #expect(throws: RaftError.confChangeInProgress) {
            _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .removeNode, node: 2))
        }
        net.stabilize()
        #expect(net[1].confState.learners == [4])
        #expect(net[4].lastIndex == net[1].lastIndex, "the learner received the whole log")
        #expect(net.applied[4] == net.applied[1])
        // A learner never campaigns.
        net.tick(4, times: 100)
        #expect(net[4].role == .follower)
        _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .promote, node: 4))
        net.stabilize()
        #expect(net[1].confState.voters == [1, 2, 3, 4])
        #expect(net[4].confState.voters == [1, 2, 3, 4])
        _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .removeNode, node: 2))
        net.stabilize()
        #expect(net[1].confState.voters == [1, 3, 4])
        #expect(throws: RaftError.invalidConfChange("node 9 is not a member")) {
            _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .removeNode, node: 9))
        }
    }

    @Test("§5.2 + §4.2.2: removing the leader makes it step down once the change commits")
    func removeLeader() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        _ = try net.nodes[1]!.proposeConfChange(ConfChange(kind: .removeNode, node: 1))
        net.stabilize()
        #expect(net[1].role == .follower)
        #expect(net[2].confState.voters == [2, 3])
        net.elect(2)
        #expect(net[2].role == .leader)
    }

    @Test("§7 snapshots: a follower behind the compacted log gets InstallSnapshot and catches up")
    func installSnapshot() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        net.isolate(3)
        for i in 0..<20 { try net.propose(1, "s\(i)") }
        let snap = try net.nodes[1]!.compact(data: [42])
        #expect(net[1].firstIndex == snap.metadata.index + 1)
        net.heal()
        try net.propose(1, "after")
        #expect(net.delivered.contains { $0.kind == .snapshot && $0.to == 3 })
        #expect(net[3].lastIndex == net[1].lastIndex)
        #expect(net[3].commitIndex == net[1].commitIndex)
        let stored = try net.storages[3]!.load()
        #expect(stored.snapshot.metadata.index == snap.metadata.index)
        #expect(stored.snapshot.data == [42])
    }

    @Test("pipelining: the leader streams appends without waiting, bounded by the inflight window")
    func pipelining() throws {
        var net = TestNetwork([1, 2, 3]) { $0.maxInflight = 3; $0.maxEntriesPerMessage = 1 }
        net.elect(1)
        for i in 0..<10 { _ = try net.nodes[1]!.propose([[UInt8(i)]]) }
        let ready = net.nodes[1]!.ready()
        let appendsTo2 = ready.messagesBeforePersist.filter { $0.kind == .append && $0.to == 2 }
        #expect(ready.messages.allSatisfy { $0.kind != .append }, "a leader's appends leave before its own write")
        #expect(appendsTo2.count == 3, "three appends in flight before any acknowledgement")
        net.stabilize()
        #expect(net[2].lastIndex == net[1].lastIndex)
    }

    @Test("a commit index alone is not worth a disk sync; a new term or vote is")
    func syncOnlyWhenNeeded() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        _ = try net.nodes[1]!.propose([[1]])
        let first = net.nodes[1]!.ready()
        #expect(first.mustSync, "new entries must be durable")
        net.nodes[1]!.advance(first)
        // Acknowledgements commit the entry: only the commit index changes on the leader.
        let index = net[1].lastIndex
        for follower: NodeID in [2, 3] {
            try net.nodes[1]!.step(Message(kind: .appendResponse, from: follower, to: 1, term: net[1].term, index: index))
        }
        let second = net.nodes[1]!.ready()
        #expect(second.hardState?.commit == index)
        #expect(!second.mustSync)
        #expect(second.committedEntries.last?.index == index)
        // A vote is durable before its answer leaves.
        try net.nodes[2]!.step(Message(kind: .vote, from: 3, to: 2, term: net[2].term + 5, logTerm: net[1].term, index: index,
                                      context: net[2].transferContext))
        let vote = net.nodes[2]!.ready()
        #expect(vote.mustSync)
        #expect(vote.messagesBeforePersist.isEmpty)
    }

    @Test("batching: proposals queued together persist with one sync")
    func batching() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        let before = net.syncs[1, default: 0]
        _ = try net.nodes[1]!.propose((0..<100).map { [UInt8($0)] })
        let ready = net.nodes[1]!.ready()
        #expect(ready.entries.count == 100)
        _ = net.process(1)
        #expect(net.syncs[1, default: 0] == before + 1)
    }

    @Test("bad input: malformed or impossible messages are rejected and change nothing")
    func malformedMessages() throws {
        var net = TestNetwork([1, 2, 3])
        net.elect(1)
        try net.propose(1, "committed")
        let before = net[2]
        // Entries with a gap.
        #expect(throws: StepRejection.self) {
            try net.nodes[2]!.step(Message(kind: .append, from: 1, to: 2, term: before.term, logTerm: before.term,
                                          index: before.lastIndex, entries: [Entry(term: before.term, index: before.lastIndex + 2)]))
        }
        // Addressed to someone else; from itself; snapshot without payload.
        #expect(throws: StepRejection.self) { try net.nodes[2]!.step(Message(kind: .heartbeat, from: 1, to: 3, term: before.term)) }
        #expect(throws: StepRejection.self) { try net.nodes[2]!.step(Message(kind: .heartbeat, from: 2, to: 2, term: before.term)) }
        #expect(throws: StepRejection.self) { try net.nodes[2]!.step(Message(kind: .snapshot, from: 1, to: 2, term: before.term)) }
        // Overwriting a committed entry.
        #expect(throws: StepRejection.self) {
            try net.nodes[2]!.step(Message(kind: .append, from: 1, to: 2, term: before.term + 1, logTerm: 1, index: 3,
                                          entries: [Entry(term: before.term + 1, index: 4, data: [0])]))
        }
        #expect(net[2].lastIndex == before.lastIndex && net[2].commitIndex == before.commitIndex)
        #expect(net[2].log.term(at: 4) == before.log.term(at: 4))
        // An acknowledgement beyond the leader's log would commit phantom entries.
        #expect(throws: StepRejection.self) {
            try net.nodes[1]!.step(Message(kind: .appendResponse, from: 2, to: 1, term: net[1].term, index: 1_000))
        }
        #expect(net[1].commitIndex <= net[1].lastIndex)
    }
}

@Suite struct RaftLogTests {
    @Test("slices of a long log with no count limit do not overflow")
    func unboundedSlice() {
        var log = RaftLog(persisted: PersistedState())
        log.append((1...10).map { Entry(term: 1, index: $0, data: [UInt8($0)]) })
        #expect(log.slice(from: 5, to: 11, maxCount: .max, maxBytes: .max).map(\.index) == [5, 6, 7, 8, 9, 10])
        #expect(log.slice(from: 5, to: 11, maxCount: 2, maxBytes: .max).map(\.index) == [5, 6])
        #expect(log.slice(from: 5, to: 11, maxCount: .max, maxBytes: 1).map(\.index) == [5], "always at least one entry")
    }

    @Test("§4.1: a server with a committed, unapplied membership change does not campaign")
    func noCampaignWithUnappliedConfChange() {
        var raft = Raft(config: RaftConfig(id: 1), persisted: PersistedState(), bootstrap: [1, 2, 3])
        // The bootstrap entries are committed but not yet applied.
        raft.campaign(transfer: false)
        #expect(raft.role == .follower)
    }
}
