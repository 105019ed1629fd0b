// Linearizable reads (ReadIndex, thesis §6.4) and leadership transfers: requests that wait for a
// condition of the log or the cluster rather than for an entry of their own.
extension RaftNode {
    struct PendingRead {
        /// The commit index the leader confirmed for this read; nil until it did.
        var index: UInt64?
        /// The tick at which the read times out.
        var deadline: Int
        var continuation: CheckedContinuation<Void, any Error>
    }

    typealias PendingTransfer = (target: NodeID, deadline: Int, continuation: CheckedContinuation<Void, any Error>)

    /// Asks the core for a ReadIndex under a context unique to this read (a counter and the term).
    func startRead(_ cont: CheckedContinuation<Void, any Error>, deadline: Int) {
        nextReadID += 1
        var ctx: [UInt8] = []
        withUnsafeBytes(of: nextReadID.littleEndian) { ctx.append(contentsOf: $0) }
        withUnsafeBytes(of: raw.raft.term.littleEndian) { ctx.append(contentsOf: $0) }
        do {
            try raw.readIndex(context: ctx)
            reads[ctx] = PendingRead(index: nil, deadline: deadline, continuation: cont)
        } catch {
            cont.resume(throwing: RaftNodeError(error))
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
                r.continuation.resume()
            }
        }
        let leader = raw.raft.leader
        transfers.removeAll { t in
            if leader == t.target { t.continuation.resume(); return true }
            return false
        }
    }

    func expireReadsAndTransfers() {
        for (ctx, r) in reads where r.deadline <= ticks {
            reads[ctx] = nil
            r.continuation.resume(throwing: RaftNodeError.timeout)
        }
        transfers.removeAll { t in
            if t.deadline <= ticks { t.continuation.resume(throwing: RaftNodeError.timeout); return true }
            return false
        }
    }

    func failReadsAndTransfers(_ error: RaftNodeError) {
        for r in reads.values { r.continuation.resume(throwing: error) }
        for t in transfers { t.continuation.resume(throwing: error) }
        reads = [:]
        transfers = []
    }
}
