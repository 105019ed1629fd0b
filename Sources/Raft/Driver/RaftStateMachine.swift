/// The replicated state machine a `RaftNode` applies committed commands to.
///
/// The node calls it from one task at a time, in log order; implementations may still be read
/// concurrently by others (serializable reads), so they protect their own state.
public protocol RaftStateMachine: AnyObject, Sendable {
    /// Applies one committed command and returns the result handed to its proposer.
    func apply(_ command: [UInt8], index: UInt64) -> [UInt8]
    /// A serialized image of the whole state, as of the last applied index.
    func snapshot() -> [UInt8]
    /// Replaces the whole state with a snapshot's image.
    func restore(_ data: [UInt8], index: UInt64) throws
    /// Captures the state as of the last applied index and returns the work of serializing it:
    /// a closure that appends the image to the buffer it is given (the node's envelope is
    /// already in it, so a large image is written once, not copied behind a header). The node
    /// calls this on its loop and runs the returned closure on another thread, so a big state is
    /// encoded without stalling replication; the capture itself must be cheap (a copy-on-write
    /// value) and must not see later applies.
    func snapshotImage() -> @Sendable (inout [UInt8]) -> Void
    /// Throws unless `restore` would accept `data`; changes nothing. The node calls it before a
    /// snapshot received from a peer is persisted: one saved first and refused by `restore` after
    /// left a node that failed the same restore on every start.
    func validateSnapshot(_ data: [UInt8]) throws
}

extension RaftStateMachine {
    /// Accepts every image: for state machines whose `restore` cannot fail.
    public func validateSnapshot(_ data: [UInt8]) throws {}

    /// Serializes at once (fine for small states).
    public func snapshotImage() -> @Sendable (inout [UInt8]) -> Void {
        let bytes = snapshot()
        return { $0.append(contentsOf: bytes) }
    }
}

/// Failures the driver reports to callers.
public enum RaftNodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// This server is not the leader; `leader` is the one it knows (`noNode` when none is known).
    case notLeader(leader: NodeID)
    /// The proposal was overwritten by another leader's entry and will never be applied.
    case proposalDropped
    /// No answer within the deadline (e.g. the leader changed while a read was in flight).
    case timeout
    /// The node is stopped or stopping.
    case stopped
    /// The request is invalid for the cluster's state; `message` says why.
    case rejected(String)
    /// Storage failed; the node stops, since it cannot promise durability any more.
    case storage(String)

    public var description: String {
        switch self {
        case .notLeader(let leader): leader == noNode ? "not the leader and no leader is known" : "not the leader; the leader is node \(leader)"
        case .proposalDropped: "proposal dropped: another leader overwrote it"
        case .timeout: "timed out waiting for the cluster"
        case .stopped: "the Raft node is stopped"
        case .rejected(let why): why
        case .storage(let why): "storage failure: \(why)"
        }
    }

    init(_ error: RaftError) {
        switch error {
        case .notLeader(let leader): self = .notLeader(leader: leader)
        // A leader handing over (thesis §3.10) refuses proposals before appending them, so
        // nothing was proposed: callers wait for the new leader as they do through an election
        // (a `rejected` here failed the writes that a graceful stop of the leader was racing).
        case .transferInProgress: self = .notLeader(leader: noNode)
        case .confChangeInProgress: self = .rejected("another membership change is in progress")
        case .invalidConfChange(let why): self = .rejected(why)
        case .outOfRange: self = .rejected("index out of range")
        }
    }
}

/// A snapshot of a node's Raft state for status pages and metrics.
public struct RaftStatus: Sendable, Equatable {
    public var id: NodeID
    public var role: Role
    public var term: UInt64
    public var leader: NodeID
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var lastIndex: UInt64
    public var snapshotIndex: UInt64
    public var confState: ConfState
    /// Seconds since a message last arrived from each peer (nil: never).
    public var lastContact: [NodeID: Double?]
    /// On the leader: how far each member's log matches.
    public var match: [NodeID: UInt64]
    /// Disk syncs done so far, and entries persisted by them (entries per sync = batching).
    public var syncs: UInt64
    public var entriesPersisted: UInt64
    /// Snapshots received from peers and refused before being saved (inconsistent metadata, or an
    /// image the state machine cannot restore).
    public var snapshotsRefused: UInt64
}
