import Logging
import Synchronization

/// Runs a `RawNode`: ticks from an injected clock, messages from a transport, requests from the
/// application, and the Ready loop (persist, then send, then apply, then advance).
///
/// Requests are queued and handled together: many proposals that arrive while a disk sync is under
/// way become one append and one sync (batching), which is where Raft's throughput comes from.
public actor RaftNode<C: Clock> where C.Duration == Duration {
    /// Tunables of the driver; the core's are in `RaftConfig`.
    public struct Options: Sendable {
        /// Length of one logical tick (election and heartbeat timeouts are counted in ticks).
        public var tickInterval: Duration = .milliseconds(100)
        /// Take a snapshot and compact the log after this many applied entries. Each snapshot
        /// encodes and writes the whole state, so rarer is cheaper; the price is the entries kept
        /// in memory and in the log meanwhile (etcd's `--snapshot-count` is 100,000; 50,000 of
        /// our ~300-byte puts are about 15 MB). A master sets it from `--snapshot-threshold`.
        public var snapshotThreshold: UInt64 = 50_000
        /// Reads and proposals not answered within this many ticks fail with `.timeout`.
        public var requestTimeoutTicks: Int = 50
        /// A ReadIndex request the leader has not answered after this many ticks is asked again
        /// (to whoever leads by then): its message or the leader's answer may have been lost, or
        /// the leader it went to may have lost office, and it would otherwise wait out the whole
        /// request timeout. etcd's server retries its ReadIndex every 500 ms likewise.
        public var readRetryTicks: Int = 5
        /// Told, on the node's loop, the membership and member table once the node runs and again
        /// after every applied membership change or snapshot: the application points its transport
        /// at the members (adds and removes peers) and learns when this server was removed. It must
        /// return at once.
        public var onMembershipChange: (@Sendable (MembershipView) -> Void)?
        public init() {}
    }

    // Members without `private` are internal only because RaftNode+Reads.swift,
    // RaftNode+Requests.swift and RaftNode+Snapshot.swift use them; nothing else should.
    var raw: RawNode
    let storage: any LogStorage
    let machine: any RaftStateMachine
    private let transport: any RaftTransport
    /// The injected clock: ticks, request expiry, and the timing of whoever builds on this node
    /// (the store's retry deadlines).
    public nonisolated let clock: C
    let options: Options
    let logger: Logger

    enum Event: Sendable {
        case tick
        case messages([Message])
        case unreachable(NodeID)
        case request(Request)
        /// A snapshot image encoded off the loop, ready to compact the log with.
        case snapshotEncoded(index: UInt64, confState: ConfState, data: [UInt8])
        /// Storage failed outside the loop: the node stops.
        case storageFailed(String)
    }

    enum Request: Sendable {
        case propose([UInt8], CheckedContinuation<[UInt8], any Error>)
        case proposeBatch([[UInt8]], ProposalBatch)
        case confChange(ConfChange, CheckedContinuation<[UInt8], any Error>)
        case read(CheckedContinuation<Void, any Error>)
        case transfer(NodeID, CheckedContinuation<Void, any Error>)
        case campaign
    }

    /// Events from any task or thread; the loop takes them all at once. Behind a lock rather than
    /// the actor's isolation so that a proposer, the transport or the ticker hands an event over
    /// without a job on the node's executor: under load that was one executor hop per proposal,
    /// queued behind the loop while it synced.
    private struct Mailbox {
        var events: [Event] = []
        /// Set while the loop waits for an event.
        var wakeUp: CheckedContinuation<Void, Never>?
        /// Once set, requests fail with `.stopped` instead of being queued.
        var stopped = false
    }

    private let mailbox = Mutex(Mailbox())
    private var running = false

    /// This server's id, readable from any thread.
    public nonisolated let id: NodeID
    /// The leader as the loop last learned it (`noNode` while unknown), published for readers that
    /// must not wait for the loop: a follower's store forwards a write at once with it instead of
    /// first asking the loop, whose answer waits behind whatever disk sync is under way.
    nonisolated let knownLeader = Atomic<NodeID>(noNode)

    /// The leader this node last heard of (`noNode` if none). A hint: it may be stale by the time
    /// it is used, so whoever acts on it must handle `.notLeader` from the node it names.
    public nonisolated var leaderHint: NodeID { knownLeader.load(ordering: .acquiring) }

    /// The loop's own thread: it must not wait for the cooperative pool (see `ThreadExecutor`).
    private nonisolated let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    var proposals = ProposalTracker<ProposalWaiter>()
    /// ReadIndex requests by their context, with the index to wait for once the leader confirmed it.
    var reads: [[UInt8]: PendingRead] = [:]
    /// Reads taken from the mailbox and not yet asked for (see `startQueuedReads`).
    var queuedReads: [CheckedContinuation<Void, any Error>] = []
    var nextReadID: UInt64 = 0
    /// Leadership transfers under way, answered when the target leads.
    var transfers: [PendingTransfer] = []
    /// Ticks since the node started: the clock of request deadlines.
    var ticks = 0
    var lastContact: [NodeID: C.Instant] = [:]
    var syncs: UInt64 = 0
    var entriesPersisted: UInt64 = 0
    /// Whether a snapshot image is being encoded off the loop (one at a time).
    var encodingSnapshot = false
    /// Snapshots from peers refused before being saved (see `refusal(of:)`).
    var snapshotsRefused: UInt64 = 0
    /// A failure found outside `processReady` (saving a snapshot) that must stop the node.
    var storageFailure: RaftNodeError?
    /// The contexts of the members (their addresses), as of the applied index.
    var members = MemberTable()
    /// Whether this server has been a member of the applied membership: a server that starts empty
    /// to join is in none until the leader's log or snapshot adds it.
    var wasMember = false
    /// Set once an applied membership no longer lists this server after it was a member: from then
    /// on it neither ticks nor steps messages nor accepts requests (it would otherwise campaign
    /// with a stale log, or answer clients as if it still belonged to the cluster).
    var removed = false

    /// Opens a node from its storage. `bootstrap` lists the founding voters of a new cluster (the
    /// same on each founding member); a member added later starts with none and learns the
    /// membership from the leader. `bootstrapContexts` are the founding members' contexts (their
    /// addresses), written into the bootstrap entries and so into the member table.
    public init(
        config: RaftConfig, storage: any LogStorage, machine: any RaftStateMachine,
        transport: any RaftTransport, bootstrap: [NodeID] = [], bootstrapContexts: [NodeID: [UInt8]] = [:],
        clock: C, options: Options = Options(), logger: Logger = Logger(label: "raft")
    ) throws {
        let persisted = try storage.load()
        var members = MemberTable()
        if !persisted.snapshot.isEmpty {
            let (table, image) = SnapshotEnvelope.unwrap(persisted.snapshot.data)
            members = Self.table(table, for: persisted.snapshot.metadata.confState, keeping: MemberTable())
            do {
                try machine.restore(image, index: persisted.snapshot.metadata.index)
            } catch {
                // Snapshots are validated before they are saved, so this is damage on disk: the
                // log before it is gone, and starting without its state would serve a wrong one.
                throw RaftNodeError.storage(
                    "the saved snapshot at index \(persisted.snapshot.metadata.index) cannot be restored: \(error)")
            }
        }
        raw = RawNode(config: config, persisted: persisted, bootstrap: bootstrap, bootstrapContexts: bootstrapContexts)
        self.members = members
        self.wasMember = persisted.snapshot.metadata.confState.members.contains(config.id)
        self.storage = storage
        self.machine = machine
        self.transport = transport
        self.executor = ThreadExecutor(name: "raft-\(config.id)")
        self.id = config.id
        self.clock = clock
        self.options = options
        var logger = logger
        logger[metadataKey: "raft-id"] = "\(config.id)"
        self.logger = logger
    }

    // MARK: - Running

    /// Runs the node until the calling task is cancelled or storage fails.
    public func run() async throws {
        precondition(!running, "RaftNode.run() called twice")
        running = true
        defer { mailbox.withLock { $0.stopped = true } }
        notifyMembership()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [transport] in
                try await transport.run(
                    onReceive: { [weak self] batch in self?.enqueue(.messages(batch)) },
                    onUnreachable: { [weak self] peer in self?.enqueue(.unreachable(peer)) })
            }
            group.addTask { [clock, options] in
                while !Task.isCancelled {
                    try await clock.sleep(for: options.tickInterval)
                    self.enqueue(.tick)
                }
            }
            defer { group.cancelAll() }
            do {
                // The executor as the task's preference too: a resumed wait (the loop waking on
                // an event) is then scheduled on the loop's thread directly, not first on the
                // pool, where it waited behind whatever held the pool's threads.
                try await withTaskExecutorPreference(executor) { try await loop() }
            } catch {
                failAll(error as? RaftNodeError ?? .stopped)
                throw error
            }
            failAll(.stopped)
        }
    }

    private func loop() async throws {
        var events: [Event] = []
        while !Task.isCancelled {
            mailbox.withLock { swap(&events, &$0.events) }
            if events.isEmpty {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (wakeUp: CheckedContinuation<Void, Never>) in
                        let ready = mailbox.withLock { m in
                            if !m.events.isEmpty || m.stopped { return true }
                            m.wakeUp = wakeUp
                            return false
                        }
                        if ready { wakeUp.resume() }
                    }
                } onCancel: {
                    self.enqueue(.tick)
                }
                continue
            }
            for event in events { handle(event) }
            events.removeAll(keepingCapacity: true)
            startQueuedReads()
            if let storageFailure { throw storageFailure }
            try processReady()
        }
    }

    nonisolated func enqueue(_ event: Event) {
        let (accepted, wakeUp) = mailbox.withLock { m -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !m.stopped else { return (false, nil) }
            m.events.append(event)
            defer { m.wakeUp = nil }
            return (true, m.wakeUp)
        }
        guard accepted else {
            if case .request(let r) = event { fail(r, .stopped) }
            return
        }
        wakeUp?.resume()
    }

    // MARK: - Event handling

    private func handle(_ event: Event) {
        switch event {
        case .tick where removed:
            ticks += 1
            expireRequests()
        case .messages, .unreachable:
            guard !removed else { return }
            handleNetwork(event)
        case .tick:
            ticks += 1
            raw.tick()
            expireRequests()
        case .request(let request):
            handle(request)
        case .snapshotEncoded(let index, let confState, let data):
            finishSnapshot(index: index, confState: confState, data: data)
        case .storageFailed(let why):
            logger.critical("storage failed; stopping", metadata: ["error": "\(why)"])
            storageFailure = .storage(why)
        }
    }

    private func handleNetwork(_ event: Event) {
        switch event {
        case .messages(let batch):
            let now = clock.now
            for m in batch {
                lastContact[m.from] = now
                if m.kind == .snapshot, let why = refusal(of: m) {
                    snapshotsRefused += 1
                    logger.error("refused a snapshot before saving it", metadata: [
                        "from": "\(m.from)", "index": "\(m.snapshot?.metadata.index ?? 0)", "reason": "\(why)"])
                    continue
                }
                do {
                    try raw.step(m)
                } catch {
                    logger.warning("rejected message", metadata: [
                        "from": "\(m.from)", "kind": "\(m.kind)", "reason": "\(error.description)"])
                }
            }
        case .unreachable(let peer):
            raw.reportUnreachable(peer)
        default:
            break
        }
    }


    private func expireRequests() {
        for waiter in proposals.expire(now: ticks) {
            waiter.resume(throwing: RaftNodeError.timeout)
        }
        expireReadsAndTransfers()
    }

    private func failAll(_ error: RaftNodeError) {
        // A stopped node knows no leader: a store over it must fail its writes (`.stopped`), not
        // forward them on a hint while the process shuts down around it.
        knownLeader.store(noNode, ordering: .releasing)
        for waiter in proposals.removeAll() { waiter.resume(throwing: error) }
        failReadsAndTransfers(error)
        // Stopped under the lock, so no request can slip in after the drain.
        let queued = mailbox.withLock { m in
            m.stopped = true
            defer { m.events = [] }
            return m.events
        }
        for event in queued { if case .request(let r) = event { fail(r, error) } }
    }

    // MARK: - The Ready loop

    private func processReady() throws {
        while raw.hasReady {
            let ready = raw.ready()
            // 0. A leader's appends go out first: followers write while the leader writes (§10.2.1).
            if !ready.messagesBeforePersist.isEmpty { transport.send(ready.messagesBeforePersist) }
            // 1. Persist: entries, hard state and snapshot in one durable transaction, before any
            //    message that depends on them leaves (votes, append acknowledgements).
            if ready.mustSync {
                do {
                    try storage.save(ready.persistBatch)
                } catch {
                    logger.critical("storage failed; stopping", metadata: ["error": "\(error)"])
                    throw RaftNodeError.storage("\(error)")
                }
                syncs += 1
                entriesPersisted += UInt64(ready.entries.count)
            }
            // 2. Send.
            if !ready.messages.isEmpty { transport.send(ready.messages) }
            // 3. Apply.
            if let snap = ready.snapshot {
                let (table, image) = SnapshotEnvelope.unwrap(snap.data)
                do {
                    try machine.restore(image, index: snap.metadata.index)
                } catch {
                    throw RaftNodeError.storage("cannot restore snapshot \(snap.metadata.index): \(error)")
                }
                members = Self.table(table, for: snap.metadata.confState, keeping: members)
                membershipApplied(snap.metadata.confState)
            }
            for entry in ready.committedEntries { apply(entry) }
            for rs in ready.readStates { reads[rs.context]?.index = rs.index }
            if let soft = ready.softState {
                if !removed { knownLeader.store(soft.leader, ordering: .releasing) }
                logger.info("role changed", metadata: [
                    "role": "\(soft.role)", "term": "\(raw.raft.term)", "leader": "\(soft.leader)"])
                failOrphanedProposals()
            }
            // 4. Advance.
            raw.advance(ready)
            if !ready.entries.isEmpty { failOrphanedProposals() }
            completeReadsAndTransfers()
            try maybeCompact()
        }
    }

    private func apply(_ entry: Entry) {
        var result: [UInt8] = []
        var changed: ConfState?
        switch entry.kind {
        case .normal:
            if !entry.data.isEmpty { result = machine.apply(entry.data, index: entry.index) }
        case .confChange:
            if let change = ConfChange(decoding: entry.data) {
                let conf = raw.applyConfChange(change)
                members.apply(change)
                logger.info("membership changed", metadata: [
                    "change": "\(change.kind)", "node": "\(change.node)",
                    "voters": "\(conf.voters)", "learners": "\(conf.learners)"])
                changed = conf
            } else {
                logger.error("undecodable membership entry", metadata: ["index": "\(entry.index)"])
            }
        }
        switch proposals.applied(index: entry.index, term: entry.term) {
        case .committed(let waiter)?: waiter.resume(returning: result)
        case .dropped(let waiter)?: waiter.resume(throwing: RaftNodeError.proposalDropped)
        case nil: break
        }
        // After the change's own proposer is answered: a server removing itself reports success.
        if let changed { membershipApplied(changed) }
    }

    /// Proposals whose entry is no longer in the log (a new leader overwrote it) fail at once.
    private func failOrphanedProposals() {
        let r = raw.raft
        let orphans = proposals.orphaned(appliedIndex: r.appliedIndex, lastIndex: r.lastIndex) { r.log.term(at: $0) }
        for waiter in orphans {
            waiter.resume(throwing: r.role == .leader ? RaftNodeError.proposalDropped : RaftNodeError.notLeader(leader: r.leader))
        }
    }
}
