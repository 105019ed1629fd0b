// Linearizable reads (ReadIndex, thesis §6.4) and leadership transfers: requests that wait for a
// condition of the log or the cluster rather than for an entry of their own.
extension RaftNode {
    struct PendingRead {
        /// The commit index the leader confirmed for this read; nil until it did.
        var index: UInt64?
        /// The tick at which the read times out.
        var deadline: Int
        /// The tick at which an unanswered request is asked again.
        var retryAt: Int
        /// Every read that shares this request: all arrived before it was asked.
        var waiters: [CheckedContinuation<Void, any Error>]
    }

    typealias PendingTransfer = (target: NodeID, deadline: Int, continuation: CheckedContinuation<Void, any Error>)

    /// Queues a read until the events taken from the mailbox with it are handled: the reads of one
    /// drain share one ReadIndex request (`startQueuedReads`).
    func queueRead(_ cont: CheckedContinuation<Void, any Error>) {
        queuedReads.append(cont)
    }

    /// Asks the core for one ReadIndex, under a context unique to it (`nextReadContext`), for
    /// every read queued since the last call. A read may share a request asked after it arrived
    /// (the index the leader confirms is at least the commit index when the read began), never
    /// one asked before, so the reads of a drain go together and later ones wait for the next
    /// request, as etcd's server batches its ReadIndex requests. Under load this turns one
    /// ReadIndex message, one heartbeat round and one answer per read into one per drain.
    func startQueuedReads() {
        guard !queuedReads.isEmpty else { return }
        let waiters = queuedReads
        queuedReads = []
        let ctx = nextReadContext()
        do {
            try raw.readIndex(context: ctx)
            reads[ctx] = PendingRead(index: nil, deadline: ticks + options.requestTimeoutTicks,
                                     retryAt: ticks + options.readRetryTicks, waiters: waiters)
        } catch {
            let failure = RaftNodeError(error)
            for waiter in waiters { waiter.resume(throwing: failure) }
        }
    }

    /// A context unique in the cluster: this node's id, a counter and the term. The leader keeps
    /// one pending request per context and drops a second with the same one, so contexts from two
    /// nodes must never coincide (a counter and the term alone did, and a follower's read was
    /// then silently dropped until its retry).
    private func nextReadContext() -> [UInt8] {
        nextReadID += 1
        return Self.readContext(node: raw.raft.id, counter: nextReadID, term: raw.raft.term)
    }

    static func readContext(node: NodeID, counter: UInt64, term: UInt64) -> [UInt8] {
        var ctx: [UInt8] = []
        withUnsafeBytes(of: node.littleEndian) { ctx.append(contentsOf: $0) }
        withUnsafeBytes(of: counter.littleEndian) { ctx.append(contentsOf: $0) }
        withUnsafeBytes(of: term.littleEndian) { ctx.append(contentsOf: $0) }
        return ctx
    }

    /// Asks again, under a fresh context, for the reads no leader has answered in
    /// `readRetryTicks`. A read index obtained after the call is as good as one obtained at it (it
    /// is at least the commit index when the read began), so a retry keeps the read linearizable;
    /// an answer to the old context is ignored. With no leader known the read waits for the next
    /// retry rather than failing.
    func retryUnansweredReads() {
        for (ctx, read) in reads where read.index == nil && read.retryAt <= ticks {
            var retried = read
            retried.retryAt = ticks + options.readRetryTicks
            let fresh = nextReadContext()
            guard (try? raw.readIndex(context: fresh)) != nil else {
                reads[ctx] = retried
                continue
            }
            reads[ctx] = nil
            reads[fresh] = retried
        }
    }

    func startTransfer(to target: NodeID, _ cont: CheckedContinuation<Void, any Error>, deadline: Int) {
        do {
            try raw.transferLeader(to: target)
            transfers.append((target, deadline, cont))
        } catch {
            cont.resume(throwing: RaftNodeError(error))
        }
    }

    /// Answers the reads whose index is applied and the transfers whose target leads.
    func completeReadsAndTransfers() {
        let applied = raw.raft.appliedIndex
        for (ctx, r) in reads {
            if let index = r.index, index <= applied {
                reads[ctx] = nil
                for waiter in r.waiters { waiter.resume() }
            }
        }
        let leader = raw.raft.leader
        transfers.removeAll { t in
            if leader == t.target { t.continuation.resume(); return true }
            return false
        }
    }

    func expireReadsAndTransfers() {
        retryUnansweredReads()
        for (ctx, r) in reads where r.deadline <= ticks {
            reads[ctx] = nil
            for waiter in r.waiters { waiter.resume(throwing: RaftNodeError.timeout) }
        }
        transfers.removeAll { t in
            if t.deadline <= ticks { t.continuation.resume(throwing: RaftNodeError.timeout); return true }
            return false
        }
    }

    func failReadsAndTransfers(_ error: RaftNodeError) {
        for r in reads.values { for waiter in r.waiters { waiter.resume(throwing: error) } }
        for waiter in queuedReads { waiter.resume(throwing: error) }
        for t in transfers { t.continuation.resume(throwing: error) }
        reads = [:]
        queuedReads = []
        transfers = []
    }
}
