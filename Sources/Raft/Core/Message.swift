/// The kinds of message exchanged between servers. Raw values are the wire encoding.
public enum MessageKind: UInt8, Sendable, Equatable, CaseIterable {
    /// AppendEntries RPC: `index`/`logTerm` locate the entry preceding `entries`.
    case append = 1
    /// Reply to `append`: `index` is the last matching index, or on `reject` the probed index with
    /// `rejectHint`/`logTerm` pointing at where the follower's log may match (fast backtracking).
    case appendResponse = 2
    /// RequestVote RPC: `index`/`logTerm` describe the candidate's last entry.
    case vote = 3
    case voteResponse = 4
    /// Pre-vote (thesis §9.6): sent for `term + 1` without changing anyone's term.
    case preVote = 5
    case preVoteResponse = 6
    /// Leader heartbeat: carries `commit` (capped at the follower's match) and a read-index `context`.
    case heartbeat = 7
    case heartbeatResponse = 8
    /// InstallSnapshot RPC: carries `snapshot`.
    case snapshot = 9
    /// Tells the recipient to campaign at once, bypassing pre-vote and leases (leadership transfer, §3.10).
    case timeoutNow = 10
    /// A follower asks the leader for a read index; `context` identifies the request.
    case readIndex = 11
    /// The leader's answer: `index` is the read index for `context`.
    case readIndexResponse = 12
    /// A follower forwards client proposals to the leader.
    case propose = 13
    /// Ask the leader to transfer leadership to `from` (the transferee) .
    case transferLeader = 14
}

/// A message between two Raft servers. Which fields matter depends on `kind`.
public struct Message: Sendable, Equatable {
    public var kind: MessageKind
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var reject: Bool
    public var rejectHint: UInt64
    public var snapshot: Snapshot?
    public var context: [UInt8]

    public init(
        kind: MessageKind, from: NodeID = noNode, to: NodeID = noNode, term: UInt64 = 0,
        logTerm: UInt64 = 0, index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0,
        reject: Bool = false, rejectHint: UInt64 = 0, snapshot: Snapshot? = nil, context: [UInt8] = []
    ) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.snapshot = snapshot
        self.context = context
    }

    /// Whether this kind answers an election request.
    var isVoteResponse: Bool { kind == .voteResponse || kind == .preVoteResponse }
}

/// A linearizable read that may now be served: once `index` is applied locally, reading the state
/// machine reflects every write committed before the read was requested (thesis §6.4).
public struct ReadState: Sendable, Equatable {
    public var index: UInt64
    public var context: [UInt8]

    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}

/// Why the core refused a request of the local application.
public enum RaftError: Error, Sendable, Equatable {
    /// This server is not the leader; `leader` is the one it knows of, or `noNode`.
    case notLeader(leader: NodeID)
    /// The leader is transferring leadership and accepts no proposals meanwhile.
    case transferInProgress
    /// Another membership change is not yet applied (changes go one at a time, thesis §4.1).
    case confChangeInProgress
    /// The membership change is invalid for the current configuration.
    case invalidConfChange(String)
    /// A snapshot or compaction request points outside the log.
    case outOfRange
}
