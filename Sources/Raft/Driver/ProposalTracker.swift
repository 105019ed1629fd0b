/// The proposals a `RaftNode` has appended and not yet answered: for each log index, the term it
/// was proposed in, the tick by which it must be answered, and who waits for it.
///
/// Pure bookkeeping: it never resumes anything and reads no clock. Time is the node's tick count
/// (`now`, `deadline`), and every event returns the waiters to answer, so the node resumes its
/// continuations and tests use plain values as waiters.
///
/// An answer is decided by the entry at the proposal's index: applied with the same term, the
/// proposal succeeded; applied with another term, or gone from the log before it was applied (a new
/// leader overwrote it), it was dropped. Proposals not answered by their deadline time out.
struct ProposalTracker<Waiter> {
    struct Pending {
        /// The term the proposal was appended in; its entry is ours only if it still has this term.
        var term: UInt64
        /// The tick at which the proposal times out.
        var deadline: Int
        var waiter: Waiter
    }

    /// What became of a proposal whose index was applied.
    enum Outcome {
        /// The applied entry is the proposal: answer with the state machine's result.
        case committed(Waiter)
        /// Another entry (of another term) was applied at its index.
        case dropped(Waiter)
    }

    private(set) var pending: [UInt64: Pending] = [:]

    var isEmpty: Bool { pending.isEmpty }
    var count: Int { pending.count }

    /// A proposal appended at `index` in `term`, to be answered by tick `deadline`.
    mutating func track(index: UInt64, term: UInt64, deadline: Int, waiter: Waiter) {
        pending[index] = Pending(term: term, deadline: deadline, waiter: waiter)
    }

    /// The entry at `index` of `term` was applied: the proposal there, if any, is answered.
    mutating func applied(index: UInt64, term: UInt64) -> Outcome? {
        guard let p = pending.removeValue(forKey: index) else { return nil }
        return p.term == term ? .committed(p.waiter) : .dropped(p.waiter)
    }

    /// The proposals whose deadline is `now` or earlier; they are forgotten.
    mutating func expire(now: Int) -> [Waiter] {
        var expired: [Waiter] = []
        for (index, p) in pending where p.deadline <= now {
            pending[index] = nil
            expired.append(p.waiter)
        }
        return expired
    }

    /// The proposals not yet applied whose entry is no longer in the log: past `lastIndex`, or of
    /// another term there (`term` gives the log's term at an index, nil when it has none). They
    /// are forgotten.
    mutating func orphaned(appliedIndex: UInt64, lastIndex: UInt64, term: (UInt64) -> UInt64?) -> [Waiter] {
        var orphans: [Waiter] = []
        for (index, p) in pending where index > appliedIndex {
            let still = index <= lastIndex && term(index) == p.term
            if !still {
                pending[index] = nil
                orphans.append(p.waiter)
            }
        }
        return orphans
    }

    /// Every proposal, forgotten (the node stops).
    mutating func removeAll() -> [Waiter] {
        defer { pending = [:] }
        return pending.values.map(\.waiter)
    }
}

extension ProposalTracker: Sendable where Waiter: Sendable {}
extension ProposalTracker.Pending: Sendable where Waiter: Sendable {}
extension ProposalTracker.Outcome: Sendable where Waiter: Sendable {}
