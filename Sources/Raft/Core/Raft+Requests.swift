/// Requests of the local application: proposals, reads, membership, transfer, compaction.
extension Raft {
    /// Appends client commands to the leader's log; they are committed once replicated (§5.3).
    /// Returns the index of the last appended entry.
    public mutating func propose(_ commands: [[UInt8]]) throws(RaftError) -> UInt64 {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard leadTransferee == noNode else { throw .transferInProgress }
        appendEntries(commands.map { Entry(term: term, index: 0, data: $0) })
        broadcastAppend()
        return log.lastIndex
    }

    /// Proposes a single-server membership change (thesis §4.1). Only one may be pending: the next
    /// one is refused until this one is applied.
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) -> UInt64 {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard leadTransferee == noNode else { throw .transferInProgress }
        guard pendingConfIndex <= log.applied else { throw .confChangeInProgress }
        try validate(change)
        appendEntries([Entry(term: term, index: 0, kind: .confChange, data: change.encoded)])
        pendingConfIndex = log.lastIndex
        broadcastAppend()
        return log.lastIndex
    }

    func validate(_ change: ConfChange) throws(RaftError) {
        let isVoter = confState.voters.contains(change.node)
        let isLearner = confState.learners.contains(change.node)
        guard change.node != noNode else { throw .invalidConfChange("node id 0 is reserved") }
        switch change.kind {
        case .addNode, .addLearner:
            if isVoter || isLearner { throw .invalidConfChange("node \(change.node) is already a member") }
        case .promote:
            if !isLearner { throw .invalidConfChange("node \(change.node) is not a learner") }
        case .removeNode:
            if !isVoter && !isLearner { throw .invalidConfChange("node \(change.node) is not a member") }
            if isVoter && confState.voters.count == 1 { throw .invalidConfChange("cannot remove the last voter") }
        }
    }

    /// Applies a committed membership change; the driver calls it when it applies the entry.
    /// Returns the new membership.
    @discardableResult
    public mutating func applyConfChange(_ change: ConfChange) -> ConfState {
        var voters = Set(confState.voters)
        var learners = Set(confState.learners)
        switch change.kind {
        case .addNode:
            learners.remove(change.node)
            voters.insert(change.node)
        case .addLearner:
            if !voters.contains(change.node) { learners.insert(change.node) }
        case .promote:
            if learners.remove(change.node) != nil { voters.insert(change.node) }
        case .removeNode:
            voters.remove(change.node)
            learners.remove(change.node)
        }
        confState = ConfState(voters: Array(voters), learners: Array(learners))
        // Keep the progress of members that stay; new members start probing at the end of the log.
        for node in confState.members where progress[node] == nil {
            progress[node] = Progress(next: log.lastIndex + 1, maxInflight: config.maxInflight,
                                      isLearner: learners.contains(node))
        }
        for node in progress.keys.sorted() where !voters.contains(node) && !learners.contains(node) {
            if role == .leader && node != id {
                // The leader stops replicating to a removed server, which would then never learn
                // the commit of its own removal and keep campaigning (thesis §4.2.3 discusses such
                // disruptive servers). One last append and heartbeat carry the commit index to it,
                // so it can apply its removal and stop; best effort (the application may also tell
                // it, as etcd's transport does).
                _ = sendAppend(to: node)
                send(Message(kind: .heartbeat, to: node, commit: min(progress[node]!.match, log.committed)))
            }
            progress[node] = nil
        }
        for node in confState.members { progress[node]!.isLearner = learners.contains(node) }
        if role == .leader {
            if !voters.contains(id) {
                // Thesis §4.2.2: a leader removed from the cluster steps down once the change commits.
                becomeFollower(term: term, leader: noNode)
                return confState
            }
            if leadTransferee != noNode && !voters.contains(leadTransferee) { leadTransferee = noNode }
            // A smaller quorum may commit at once.
            if maybeCommit() { broadcastAppend() }
            broadcastAppend()
        }
        return confState
    }

    /// Asks for a linearizable read point (thesis §6.4). The answer arrives as a `ReadState` with the
    /// same `context`, which must be unique among outstanding requests.
    public mutating func readIndex(context: [UInt8]) throws(RaftError) {
        switch role {
        case .leader:
            handleReadIndex(Message(kind: .readIndex, from: id, to: id, context: context))
        default:
            guard leader != noNode else { throw .notLeader(leader: noNode) }
            send(Message(kind: .readIndex, to: leader, context: context))
        }
    }

    mutating func handleReadIndex(_ m: Message) {
        if confState.voters.count == 1 && confState.voters.first == id {
            answerRead(ReadOnlyQueue.Request(index: log.committed, context: m.context, from: m.from, acks: [id]))
            return
        }
        // Until an entry of this term commits, the leader does not know the latest commit index.
        guard log.term(at: log.committed) == term else {
            pendingReadRequests.append(m)
            return
        }
        readOnly.add(index: log.committed, context: m.context, from: m.from, leader: id)
        broadcastHeartbeat(context: m.context)
    }

    mutating func releasePendingReads() {
        guard !pendingReadRequests.isEmpty, log.term(at: log.committed) == term else { return }
        let waiting = pendingReadRequests
        pendingReadRequests = []
        for m in waiting { handleReadIndex(m) }
    }

    mutating func answerRead(_ request: ReadOnlyQueue.Request) {
        if request.from == id {
            readStates.append(ReadState(index: request.index, context: request.context))
        } else {
            send(Message(kind: .readIndexResponse, to: request.from, index: request.index, context: request.context))
        }
    }

    /// Asks the cluster to make `target` the leader (graceful shutdown, rolling restarts).
    public mutating func transferLeader(to target: NodeID) throws(RaftError) {
        switch role {
        case .leader:
            guard confState.voters.contains(target) else { throw .invalidConfChange("node \(target) is not a voter") }
            transferLeadership(to: target)
        default:
            guard leader != noNode else { throw .notLeader(leader: noNode) }
            if target == id {
                send(Message(kind: .transferLeader, to: leader))
            } else {
                throw .notLeader(leader: leader)
            }
        }
    }

    /// The transport lost its connection to `peer`.
    public mutating func reportUnreachable(_ peer: NodeID) {
        if role == .leader {
            if progress[peer]?.state == .replicate { progress[peer]!.becomeProbe() }
        } else if role == .follower && peer == leader && leader != noNode {
            // Our leader's connection broke: it may be dead. End our lease and campaign soon.
            // This is safe: a pre-vote changes no term, and the other followers still refuse it
            // while they hear from a live leader. All followers see the break at about the same
            // moment, so they go in id order, one tick apart: simultaneous pre-votes would grant
            // each other and then split the real vote, costing a full election timeout.
            electionElapsed = config.electionTick
            leader = noNode
            let rank = confState.voters.filter { $0 != peer }.sorted().firstIndex(of: id) ?? 0
            if rank == 0 {
                campaign(transfer: false)
            } else {
                randomizedElectionTimeout = config.electionTick + rank
            }
        }
    }

    /// Replaces the applied log prefix with a snapshot of the state machine at the applied index.
    public mutating func compact(data: [UInt8]) throws(RaftError) -> Snapshot {
        try compact(at: log.applied, confState: confState, data: data)
    }

    /// Compacts the log up to `index`, an applied entry, with `data` the state machine's image
    /// as of that entry and `confState` the membership then. The image may have been serialized
    /// off the node's loop while later entries were applied (the driver does so for big states).
    public mutating func compact(at index: UInt64, confState: ConfState, data: [UInt8]) throws(RaftError) -> Snapshot {
        guard index > log.offset, index <= log.applied, let entryTerm = log.term(at: index) else { throw .outOfRange }
        let snap = Snapshot(metadata: SnapshotMetadata(index: index, term: entryTerm, confState: confState), data: data)
        log.compact(to: snap)
        return snap
    }
}
