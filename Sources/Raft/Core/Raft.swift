/// Settings of one Raft server. Times are in ticks; the driver decides how long a tick is.
public struct RaftConfig: Sendable {
    /// This server's id (non-zero).
    public var id: NodeID
    /// Followers start an election after between `electionTick` and `2 * electionTick - 1` ticks
    /// without hearing from a leader (Raft §5.2, randomized to avoid split votes).
    public var electionTick: Int = 10
    /// The leader sends heartbeats every `heartbeatTick` ticks.
    public var heartbeatTick: Int = 1
    /// Pre-vote (thesis §9.6): a candidate first checks that it could win, without raising terms.
    public var preVote: Bool = true
    /// CheckQuorum (thesis §6.2): a leader that has not heard from a quorum within an election
    /// timeout steps down, and followers that hear from a leader ignore vote requests.
    public var checkQuorum: Bool = true
    /// Unacknowledged appends allowed per follower in the replicate state (pipelining).
    public var maxInflight: Int = 256
    /// Most entries in one append message.
    public var maxEntriesPerMessage: Int = 1024
    /// About the most entry bytes in one append message.
    public var maxBytesPerMessage: Int = 1 << 20
    /// Most committed entries handed to the application in one `Ready`.
    public var maxCommittedPerReady: Int = 8192
    /// Seed of the generator behind randomized election timeouts.
    public var seed: UInt64

    public init(id: NodeID, seed: UInt64? = nil) {
        self.id = id
        self.seed = seed ?? id &* 0x9E37_79B9_7F4A_7C15
    }
}

/// The Raft consensus state machine of one server: a pure value, driven by `tick()` and
/// `step(_:)`, whose outputs (messages, entries to persist, entries to apply) accumulate until a
/// `RawNode` collects them into a `Ready`. No clock, no I/O, no global randomness.
public struct Raft: Sendable {
    public let config: RaftConfig
    public var id: NodeID { config.id }

    public internal(set) var term: UInt64 = 0
    public internal(set) var vote: NodeID = noNode
    public internal(set) var role: Role = .follower
    /// The leader this server knows of in the current term, or `noNode`.
    public internal(set) var leader: NodeID = noNode

    var log: RaftLog
    /// The applied membership.
    public internal(set) var confState = ConfState()
    var progress: [NodeID: Progress] = [:]
    /// Votes received in the current (pre-)election: true for granted.
    var votes: [NodeID: Bool] = [:]

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var random: SplitMix64

    /// Leadership transfer target, while one is in progress (thesis §3.10).
    public internal(set) var leadTransferee: NodeID = noNode
    /// Index of the latest membership change proposed; no new one until it is applied (§4.1).
    var pendingConfIndex: UInt64 = 0

    var readOnly = ReadOnlyQueue()
    /// ReadIndex requests that wait for the leader's first commit in its term (thesis §6.4 step 1).
    var pendingReadRequests: [Message] = []

    /// Outputs collected by `RawNode.ready()`.
    var messages: [Message] = []
    var readStates: [ReadState] = []

    /// Creates a server from what it persisted. With an empty persisted state and `bootstrap` voters,
    /// the log starts with their membership entries, identically on every founding member.
    /// `bootstrapContexts` gives each founding member's entry its context (its addresses, say), so
    /// that the member table is in the log from the first entry, as etcd's bootstrap does.
    public init(config: RaftConfig, persisted: PersistedState, bootstrap: [NodeID] = [],
                bootstrapContexts: [NodeID: [UInt8]] = [:]) {
        precondition(config.id != noNode, "a Raft server needs a non-zero id")
        self.config = config
        self.random = SplitMix64(seed: config.seed)
        var state = persisted
        let fresh = persisted.hardState.isEmpty && persisted.entries.isEmpty && persisted.snapshot.isEmpty
        if fresh && !bootstrap.isEmpty {
            // Like etcd's Bootstrap: every founding member writes the same entries at term 1 and
            // treats them as committed, so they need no election to take effect.
            state.entries = bootstrap.sorted().enumerated().map { i, node in
                Entry(term: 1, index: UInt64(i + 1), kind: .confChange,
                      data: ConfChange(kind: .addNode, node: node, context: bootstrapContexts[node] ?? []).encoded)
            }
            state.hardState = HardState(term: 1, vote: noNode, commit: UInt64(bootstrap.count))
        }
        log = RaftLog(persisted: state)
        if fresh && !bootstrap.isEmpty {
            // The bootstrap entries are not durable yet: the first Ready persists them.
            log = RaftLog(persisted: PersistedState())
            log.append(state.entries)
            log.commit(to: UInt64(bootstrap.count))
        }
        term = state.hardState.term
        vote = state.hardState.vote
        confState = persisted.snapshot.metadata.confState
        rebuildProgress()
        becomeFollower(term: term, leader: noNode)
    }

    // MARK: - Inspection

    /// The hard state as it should be persisted.
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var commitIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    public var lastIndex: UInt64 { log.lastIndex }
    public var firstIndex: UInt64 { log.firstIndex }
    /// Whether this server may become leader: it is a voter.
    public var isPromotable: Bool { confState.voters.contains(id) }
    var quorum: Int { confState.voters.count / 2 + 1 }

    /// The leader's view of each follower's replication (empty on other servers).
    public var replicationStatus: [NodeID: (match: UInt64, next: UInt64, isLearner: Bool)] {
        guard role == .leader else { return [:] }
        return progress.mapValues { ($0.match, $0.next, $0.isLearner) }
    }

    // MARK: - Role changes

    mutating func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = noNode
        }
        leader = noNode
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTick + Int(random.next() % UInt64(config.electionTick))
        leadTransferee = noNode
        votes = [:]
        pendingConfIndex = 0
        readOnly = ReadOnlyQueue()
        rebuildProgress()
    }

    mutating func rebuildProgress() {
        var fresh: [NodeID: Progress] = [:]
        for node in confState.voters {
            fresh[node] = Progress(next: log.lastIndex + 1, maxInflight: config.maxInflight, isLearner: false)
        }
        for node in confState.learners {
            fresh[node] = Progress(next: log.lastIndex + 1, maxInflight: config.maxInflight, isLearner: true)
        }
        if fresh[id] != nil { fresh[id]!.match = log.stableIndex }
        progress = fresh
    }

    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        role = .follower
        leader = newLeader
    }

    mutating func becomePreCandidate() {
        // Pre-vote changes neither term nor vote (thesis §9.6), so a failed pre-election is harmless.
        votes = [:]
        role = .preCandidate
        leader = noNode
        electionElapsed = 0
    }

    mutating func becomeCandidate() {
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    mutating func becomeLeader() {
        reset(term: term)
        role = .leader
        leader = id
        progress[id]?.becomeReplicate()
        // No membership change until the entries of earlier terms are applied (etcd does the same).
        pendingConfIndex = log.lastIndex
        // A no-op entry of the new term lets the leader commit, and so learn the commit index,
        // before it serves reads (thesis §6.4) or counts replicas (§5.4.2).
        appendEntries([Entry(term: term, index: 0)])
        broadcastAppend()
    }

    // MARK: - Ticks

    /// Advances logical time by one tick.
    public mutating func tick() {
        if role == .leader {
            tickLeader()
        } else {
            electionElapsed += 1
            if isPromotable && electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                campaign(transfer: false)
            }
        }
    }

    mutating func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum {
                progress[id]?.recentActive = true
                let active = confState.voters.filter { progress[$0]?.recentActive == true }.count
                for key in progress.keys where key != id { progress[key]!.recentActive = false }
                if active < quorum {
                    // Thesis §6.2: a leader cut off from a quorum steps down so that clients
                    // find the real leader instead of waiting on this one.
                    becomeFollower(term: term, leader: noNode)
                    return
                }
            }
            // A transfer that has not finished within an election timeout is abandoned (§3.10).
            leadTransferee = noNode
            // A snapshot that got no answer within an election timeout is presumed lost: probe again.
            for key in progress.keys where progress[key]!.state == .snapshot { progress[key]!.becomeProbe() }
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            broadcastHeartbeat(context: readOnly.lastContext ?? [])
        }
    }

    // MARK: - Elections

    /// Starts an election now (or a pre-election, with pre-vote on and no transfer in progress).
    public mutating func campaign(transfer: Bool) {
        guard isPromotable, role != .leader else { return }
        // With a membership change committed but not applied, our view of the voters is stale.
        if hasUnappliedConfChange { return }
        if config.preVote && !transfer {
            becomePreCandidate()
            requestVotes(kind: .preVote, term: term + 1, transfer: false)
        } else {
            becomeCandidate()
            requestVotes(kind: .vote, term: term, transfer: transfer)
        }
    }

    var hasUnappliedConfChange: Bool {
        guard log.committed > log.applied else { return false }
        return log.slice(from: log.applied + 1, to: log.committed + 1, maxCount: Int.max, maxBytes: Int.max)
            .contains { $0.kind == .confChange }
    }

    mutating func requestVotes(kind: MessageKind, term electionTerm: UInt64, transfer: Bool) {
        votes[id] = true
        if checkElection() { return }
        for node in confState.voters where node != id {
            send(Message(kind: kind, to: node, term: electionTerm, logTerm: log.lastTerm, index: log.lastIndex,
                         context: transfer ? transferContext : []))
        }
    }

    /// Counts votes; returns true when the election is decided.
    mutating func checkElection() -> Bool {
        let granted = confState.voters.filter { votes[$0] == true }.count
        let rejected = confState.voters.filter { votes[$0] == false }.count
        if granted >= quorum {
            if role == .preCandidate {
                becomeCandidate()
                requestVotes(kind: .vote, term: term, transfer: false)
            } else {
                becomeLeader()
            }
            return true
        }
        if confState.voters.count - rejected < quorum {
            becomeFollower(term: term, leader: noNode)
            return true
        }
        return false
    }

    /// The context marking vote requests of a leadership transfer, which bypass leases.
    let transferContext: [UInt8] = Array("transfer".utf8)

    // MARK: - Output

    /// Queues a message to a peer, stamping sender and term (proposal-like messages carry none).
    mutating func send(_ m: Message) {
        var m = m
        m.from = id
        switch m.kind {
        case .vote, .preVote, .voteResponse, .preVoteResponse:
            // Election messages carry the term explicitly (a pre-vote asks for term + 1).
            precondition(m.term != 0, "election messages need a term")
        case .propose, .readIndex, .transferLeader:
            // Forwarded requests are not bound to a term, as in etcd.
            m.term = 0
        default:
            m.term = term
        }
        messages.append(m)
    }
}
