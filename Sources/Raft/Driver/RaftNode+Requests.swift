// What the application asks of the node: the public requests, which are queued in the mailbox
// as events, and how the loop starts or refuses each one.
extension RaftNode {
    // MARK: - Public requests

    /// Replicates `command` and returns the state machine's result once it is committed and applied.
    /// On a follower it fails at once with `.notLeader` naming the leader.
    public nonisolated func propose(_ command: [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { enqueue(.request(.propose(command, $0))) }
    }

    /// Proposes `commands` in order, as one request: each is answered on its own, as `propose`
    /// would answer it, and the answers come back together once the last is known. For a leader
    /// taking many forwarded writes at once: one wait for all instead of one task each.
    public nonisolated func propose(batch commands: [[UInt8]]) async -> [Result<[UInt8], any Error>] {
        await withCheckedContinuation { continuation in
            let batch = ProposalBatch(count: commands.count, continuation: continuation)
            if !commands.isEmpty { enqueue(.request(.proposeBatch(commands, batch))) }
        }
    }

    /// Waits until this node's state machine reflects every write committed before the call
    /// (ReadIndex, thesis §6.4); then a local read is linearizable. Works on followers too.
    public nonisolated func linearizableRead() async throws {
        try await withCheckedThrowingContinuation { enqueue(.request(.read($0))) }
    }

    /// Hands leadership to `target` and returns once it leads (or fails with `.timeout`).
    public nonisolated func transferLeadership(to target: NodeID) async throws {
        try await withCheckedThrowingContinuation { enqueue(.request(.transfer(target, $0))) }
    }

    /// Proposes a membership change; returns once it is applied here.
    public nonisolated func changeMembership(_ change: ConfChange) async throws {
        _ = try await withCheckedThrowingContinuation { enqueue(.request(.confChange(change, $0))) }
    }

    /// Adds `node` as a learner, waits until it has caught up with the leader's log, then promotes it
    /// to voter (thesis §4.2.1), so that a new, empty server never stalls commitment.
    public func addVoter(_ node: NodeID, context: [UInt8] = [], catchUpWithin: Duration = .seconds(30)) async throws {
        try await changeMembership(ConfChange(kind: .addLearner, node: node, context: context))
        let deadline = clock.now.advanced(by: catchUpWithin)
        while true {
            let s = status()
            guard s.role == .leader else { throw RaftNodeError.notLeader(leader: s.leader) }
            if let m = s.match[node], s.lastIndex - m <= 16 { break }
            if clock.now >= deadline { throw RaftNodeError.timeout }
            try await clock.sleep(for: options.tickInterval)
        }
        try await changeMembership(ConfChange(kind: .promote, node: node, context: context))
    }

    /// Starts an election at once (tests, manual recovery).
    public func campaign() {
        enqueue(.request(.campaign))
    }

    /// The node's Raft state.
    public func status() -> RaftStatus {
        let r = raw.raft
        let now = clock.now
        var contact: [NodeID: Double?] = [:]
        for node in r.confState.members where node != r.id {
            contact[node] = lastContact[node].map { seconds($0.duration(to: now)) }
        }
        return RaftStatus(
            id: r.id, role: r.role, term: r.term, leader: r.leader, commitIndex: r.commitIndex,
            appliedIndex: r.appliedIndex, lastIndex: r.lastIndex, snapshotIndex: r.firstIndex - 1,
            confState: r.confState, lastContact: contact,
            match: r.replicationStatus.mapValues(\.match), syncs: syncs, entriesPersisted: entriesPersisted,
            snapshotsRefused: snapshotsRefused)
    }

    private func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }

    // MARK: - Handling on the loop

    /// Starts a request taken from the mailbox; its deadline is counted in ticks.
    func handle(_ request: Request) {
        let deadline = ticks + options.requestTimeoutTicks
        if removed {
            fail(request, .rejected(Self.removedMessage))
            return
        }
        switch request {
        case .propose(let command, let cont):
            // Consecutive proposals in the inbox end up in one Ready; the core batches them per append.
            do {
                let index = try raw.propose([command])
                proposals.track(index: index, term: raw.raft.term, deadline: deadline, waiter: .single(cont))
            } catch {
                cont.resume(throwing: RaftNodeError(error))
            }
        case .proposeBatch(let commands, let batch):
            for (i, command) in commands.enumerated() {
                do {
                    let index = try raw.propose([command])
                    proposals.track(index: index, term: raw.raft.term, deadline: deadline, waiter: .batched(batch, i))
                } catch {
                    batch.settle(i, .failure(RaftNodeError(error)))
                }
            }
        case .confChange(let change, let cont):
            do {
                let index = try raw.proposeConfChange(change)
                proposals.track(index: index, term: raw.raft.term, deadline: deadline, waiter: .single(cont))
            } catch {
                cont.resume(throwing: RaftNodeError(error))
            }
        case .read(let cont):
            queueRead(cont)
        case .transfer(let target, let cont):
            startTransfer(to: target, cont, deadline: deadline)
        case .campaign:
            raw.campaign()
        }
    }

    nonisolated func fail(_ request: Request, _ error: RaftNodeError) {
        switch request {
        case .propose(_, let c), .confChange(_, let c): c.resume(throwing: error)
        case .proposeBatch(_, let batch): batch.settleAll(error)
        case .read(let c), .transfer(_, let c): c.resume(throwing: error)
        case .campaign: break
        }
    }
}
