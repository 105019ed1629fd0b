import Testing
@testable import Raft

/// The node's proposal bookkeeping on its own: waiters are names, time is the node's tick count
/// (deadlines are ticks, not instants), and the log is a table of index -> term.
@Suite struct ProposalTrackerTests {
    /// A tracker with proposals `name -> (index, term, deadline)`.
    private func tracker(_ proposals: [(String, index: UInt64, term: UInt64, deadline: Int)]) -> ProposalTracker<String> {
        var tracker = ProposalTracker<String>()
        for p in proposals { tracker.track(index: p.index, term: p.term, deadline: p.deadline, waiter: p.0) }
        return tracker
    }

    enum Answer: Equatable { case committed(String), dropped(String), none }

    @Test("an applied entry answers the proposal at its index by comparing terms", arguments: [
        // (proposed at index 5 in term, entry applied at index, with term) -> answer
        (UInt64(3), UInt64(5), UInt64(3), Answer.committed("p")),  // our entry
        (3, 5, 4, .dropped("p")),  // a new leader's entry took index 5
        (3, 6, 3, .none),  // nothing was proposed at index 6
    ])
    func applied(proposedTerm: UInt64, index: UInt64, appliedTerm: UInt64, expected: Answer) {
        var t = tracker([("p", 5, proposedTerm, 100)])
        let answer: Answer = switch t.applied(index: index, term: appliedTerm) {
        case .committed(let w)?: .committed(w)
        case .dropped(let w)?: .dropped(w)
        case nil: .none
        }
        #expect(answer == expected)
        // Answered proposals are forgotten; others stay.
        #expect(t.count == (expected == .none ? 1 : 0))
        if expected != .none { #expect(t.applied(index: index, term: appliedTerm) == nil) }
    }

    @Test("proposals time out at their deadline tick, not before", arguments: [
        // now -> the proposals that expire (deadlines: a 10, b 20, c 30)
        (9, [String]()),
        (10, ["a"]),  // a deadline is inclusive
        (25, ["a", "b"]),
        (30, ["a", "b", "c"]),
        (1_000, ["a", "b", "c"]),
    ])
    func expiry(now: Int, expected: [String]) {
        var t = tracker([("a", 1, 1, 10), ("b", 2, 1, 20), ("c", 3, 1, 30)])
        #expect(t.expire(now: now).sorted() == expected)
        #expect(t.count == 3 - expected.count)
        // Expired proposals are forgotten: a later tick does not time them out again.
        #expect(t.expire(now: now).isEmpty)
    }

    struct LogCase: Sendable, CustomTestStringConvertible {
        let name: String
        let applied: UInt64
        /// The log's term at each index after the event (the log ends at its last key).
        let log: [UInt64: UInt64]
        let orphans: [String]
        var testDescription: String { name }
    }

    // Proposals: a at index 4, b at 5, c at 6, all in term 2; entries up to index 3 are applied.
    @Test("proposals whose entry left the log fail; the rest keep waiting", arguments: [
        LogCase(name: "nothing changed (leadership lost, log intact)", applied: 3,
                log: [4: 2, 5: 2, 6: 2], orphans: []),
        LogCase(name: "the log was truncated after index 4", applied: 3,
                log: [4: 2], orphans: ["b", "c"]),
        LogCase(name: "a new leader (term 3) overwrote index 5 onwards", applied: 3,
                log: [4: 2, 5: 3, 6: 3], orphans: ["b", "c"]),
        LogCase(name: "a new leader overwrote everything and wrote more", applied: 3,
                log: [4: 3, 5: 3, 6: 3, 7: 3], orphans: ["a", "b", "c"]),
        LogCase(name: "applied entries are left to apply to answer", applied: 5,
                log: [4: 3, 5: 3], orphans: ["c"]),
    ])
    func orphans(_ c: LogCase) {
        var t = tracker([("a", 4, 2, 100), ("b", 5, 2, 100), ("c", 6, 2, 100)])
        let lastIndex = c.log.keys.max() ?? 0
        let orphans = t.orphaned(appliedIndex: c.applied, lastIndex: lastIndex) { c.log[$0] }
        #expect(orphans.sorted() == c.orphans)
        #expect(t.count == 3 - c.orphans.count)
        #expect(Set(t.pending.values.map(\.waiter)).isDisjoint(with: c.orphans))
    }

    @Test("a proposal at an index whose earlier proposal was orphaned replaces it")
    func reuseOfAnIndex() {
        var t = tracker([("old", 4, 2, 100)])
        #expect(t.orphaned(appliedIndex: 3, lastIndex: 3) { _ in nil } == ["old"])
        t.track(index: 4, term: 3, deadline: 150, waiter: "new")
        #expect(t.pending[4]?.term == 3)
        guard case .committed("new")? = t.applied(index: 4, term: 3) else {
            Issue.record("the new proposal was not committed")
            return
        }
        #expect(t.isEmpty)
    }

    @Test("stopping answers every proposal once")
    func removeAll() {
        var t = tracker([("a", 1, 1, 10), ("b", 2, 1, 20)])
        #expect(t.removeAll().sorted() == ["a", "b"])
        #expect(t.isEmpty)
        #expect(t.removeAll().isEmpty)
        #expect(t.expire(now: 1_000).isEmpty)
    }
}
