/// Identifier of a Raft server. `0` means "none" (no vote, no known leader).
public typealias NodeID = UInt64

/// The sentinel for "no node".
public let noNode: NodeID = 0

/// What an entry carries: a command for the state machine or a membership change.
public enum EntryKind: UInt8, Sendable, Equatable {
    /// A command for the replicated state machine (empty data: the leader's no-op of its term).
    case normal = 0
    /// A membership change, encoded with `ConfChange.encoded`.
    case confChange = 1
}

/// One record of the replicated log.
public struct Entry: Sendable, Equatable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }
}

/// The state a server must persist before it answers any message that depends on it (Raft figure 2).
public struct HardState: Sendable, Equatable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = noNode, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public var isEmpty: Bool { term == 0 && vote == noNode && commit == 0 }
}

/// The membership of the cluster: voters decide elections and commitment; learners only receive the log.
public struct ConfState: Sendable, Equatable {
    public var voters: [NodeID]
    public var learners: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = []) {
        self.voters = voters.sorted()
        self.learners = learners.sorted()
    }

    /// Every member, voters first.
    public var members: [NodeID] { voters + learners }
}

/// Where a snapshot sits in the log and which membership it captured.
public struct SnapshotMetadata: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// A point-in-time image of the state machine that replaces the log up to `metadata.index`.
public struct Snapshot: Sendable, Equatable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// A single-server membership change (thesis §4.1).
public struct ConfChange: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// Add a voter directly (used only to bootstrap or re-add a known node).
        case addNode = 0
        /// Remove a voter or a learner.
        case removeNode = 1
        /// Add a non-voting member that receives the log and catches up (thesis §4.2.1).
        case addLearner = 2
        /// Promote a caught-up learner to voter.
        case promote = 3
    }

    public var kind: Kind
    public var node: NodeID
    /// Opaque application context, e.g. the address of the new member.
    public var context: [UInt8]

    public init(kind: Kind, node: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.node = node
        self.context = context
    }

    /// Binary form: kind (1 byte), node (8 bytes little endian), context.
    public var encoded: [UInt8] {
        var out: [UInt8] = [kind.rawValue]
        withUnsafeBytes(of: node.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: context)
        return out
    }

    /// Decodes `encoded`; nil when the bytes are malformed.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        var node: UInt64 = 0
        for i in 0..<8 { node |= UInt64(bytes[1 + i]) << (8 * UInt64(i)) }
        self.init(kind: kind, node: node, context: Array(bytes[9...]))
    }
}

/// The role a server currently plays.
public enum Role: UInt8, Sendable, Equatable, CustomStringConvertible {
    case follower, preCandidate, candidate, leader

    public var description: String {
        switch self {
        case .follower: "follower"
        case .preCandidate: "pre-candidate"
        case .candidate: "candidate"
        case .leader: "leader"
        }
    }
}
