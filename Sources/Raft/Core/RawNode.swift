/// Everything the driver must do after the core changed, collected in one batch.
///
/// The contract (as in etcd-io/raft): send `messagesBeforePersist`; persist `snapshot`, `entries`
/// and `hardState` in one transaction, durably when `mustSync`; then send `messages`; then apply
/// `snapshot` and `committedEntries` to the state machine and serve `readStates` once applied; then
/// call `RawNode.advance(_:)`.
public struct Ready: Sendable {
    /// The role and leader, when they changed since the last Ready.
    public var softState: (role: Role, leader: NodeID)?
    /// The hard state to persist, when it changed.
    public var hardState: HardState?
    /// Entries to persist (after removing any stored entries at or after the first one's index).
    public var entries: [Entry]
    /// A snapshot received from the leader: persist it, then restore the state machine from it.
    public var snapshot: Snapshot?
    /// Committed entries to apply, in order.
    public var committedEntries: [Entry]
    /// A leader's replication messages, which may leave before its own disk write (thesis §10.2.1):
    /// the leader counts itself toward a quorum only once its entries are durable (`advance`), so
    /// writing in parallel with the followers is safe and takes a disk sync off the commit path.
    public var messagesBeforePersist: [Message]
    /// Messages to send once the above is durable (votes and acknowledgements depend on it).
    public var messages: [Message]
    /// Linearizable reads that may be served once the state machine has applied their index.
    public var readStates: [ReadState]
    /// Whether persisting this Ready needs a disk sync: entries, a snapshot, or a new term or vote.
    /// A commit index alone need not be durable (it is relearned from the leader), so it is saved
    /// with the next synced batch instead of costing a sync of its own.
    public var mustSync: Bool
    /// The hard state when the Ready was made (bookkeeping for `advance`).
    var handedOutHardState: HardState

    /// What must be saved, as one atomic batch.
    public var persistBatch: PersistBatch {
        PersistBatch(snapshot: snapshot, entries: entries, hardState: hardState)
    }
}

/// A Raft server for a single-threaded driver: feed it ticks, messages and requests, then collect
/// a `Ready`, carry it out, and `advance`. A value type: copy it to fork a simulation.
public struct RawNode: Sendable {
    public internal(set) var raft: Raft
    /// The hard state last handed out in a Ready, and the last one made durable.
    private var lastHardState: HardState
    private var lastSyncedHardState: HardState
    private var lastSoftState: (role: Role, leader: NodeID)

    /// A server starting from what it persisted (see `Raft.init`).
    public init(config: RaftConfig, persisted: PersistedState, bootstrap: [NodeID] = [],
                bootstrapContexts: [NodeID: [UInt8]] = [:]) {
        raft = Raft(config: config, persisted: persisted, bootstrap: bootstrap, bootstrapContexts: bootstrapContexts)
        // The persisted hard state is what is on disk; a bootstrapped one is not yet.
        lastHardState = persisted.hardState
        lastSyncedHardState = persisted.hardState
        lastSoftState = (raft.role, raft.leader)
    }

    public mutating func tick() { raft.tick() }
    public mutating func step(_ m: Message) throws(StepRejection) { try raft.step(m) }
    public mutating func campaign() { raft.campaign(transfer: false) }
    public mutating func propose(_ commands: [[UInt8]]) throws(RaftError) -> UInt64 { try raft.propose(commands) }
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) -> UInt64 {
        try raft.proposeConfChange(change)
    }
    @discardableResult
    public mutating func applyConfChange(_ change: ConfChange) -> ConfState { raft.applyConfChange(change) }
    public mutating func readIndex(context: [UInt8]) throws(RaftError) { try raft.readIndex(context: context) }
    public mutating func transferLeader(to target: NodeID) throws(RaftError) { try raft.transferLeader(to: target) }
    public mutating func reportUnreachable(_ peer: NodeID) { raft.reportUnreachable(peer) }
    public mutating func compact(data: [UInt8]) throws(RaftError) -> Snapshot { try raft.compact(data: data) }

    /// Compacts up to an applied `index` with an image taken when it was the last applied entry.
    public mutating func compact(at index: UInt64, confState: ConfState, data: [UInt8]) throws(RaftError) -> Snapshot {
        try raft.compact(at: index, confState: confState, data: data)
    }

    /// Whether there is anything for the driver to do.
    public var hasReady: Bool {
        let hs = raft.hardState
        return hs != lastHardState
            || raft.role != lastSoftState.role || raft.leader != lastSoftState.leader
            || !raft.log.unstableEntries.isEmpty
            || raft.log.pendingSnapshot != nil
            || raft.log.hasEntriesToApply
            || !raft.messages.isEmpty
            || !raft.readStates.isEmpty
    }

    /// Collects the pending work. Call `advance` with it once it is done.
    public func ready() -> Ready {
        let hs = raft.hardState
        let soft = (raft.role, raft.leader)
        let softChanged = soft.0 != lastSoftState.role || soft.1 != lastSoftState.leader
        let entries = Array(raft.log.unstableEntries)
        let snapshot = raft.log.pendingSnapshot
        let electionStateDurable = hs.term == lastSyncedHardState.term && hs.vote == lastSyncedHardState.vote
        var early: [Message] = []
        var late = raft.messages
        if raft.role == .leader && electionStateDurable {
            // Replication traffic of a leader whose term is already on disk.
            let replication: Set<MessageKind> = [.append, .heartbeat, .snapshot, .timeoutNow, .readIndexResponse]
            early = late.filter { replication.contains($0.kind) && $0.term == raft.term }
            late.removeAll { replication.contains($0.kind) && $0.term == raft.term }
        }
        return Ready(
            softState: softChanged ? soft : nil,
            hardState: hs != lastSyncedHardState ? hs : nil,
            entries: entries,
            snapshot: snapshot,
            committedEntries: Array(raft.log.committedEntriesToApply(maxCount: raft.config.maxCommittedPerReady)),
            messagesBeforePersist: early,
            messages: late,
            readStates: raft.readStates,
            mustSync: snapshot != nil || !entries.isEmpty || !electionStateDurable,
            handedOutHardState: hs
        )
    }

    /// Records that `ready` was persisted, sent and applied.
    public mutating func advance(_ ready: Ready) {
        lastHardState = ready.handedOutHardState
        if ready.mustSync, let hs = ready.hardState { lastSyncedHardState = hs }
        if let soft = ready.softState { lastSoftState = soft }
        if let snap = ready.snapshot { raft.log.snapshotApplied(index: snap.metadata.index) }
        if let last = ready.entries.last { raft.persisted(upTo: last.index, term: last.term) }
        if let last = ready.committedEntries.last { raft.log.applied = max(raft.log.applied, last.index) }
        raft.messages.removeFirst(min(ready.messagesBeforePersist.count + ready.messages.count, raft.messages.count))
        raft.readStates.removeFirst(min(ready.readStates.count, raft.readStates.count))
        // Reads and conf changes waiting on the applied index may proceed now.
        raft.releasePendingReads()
    }
}
