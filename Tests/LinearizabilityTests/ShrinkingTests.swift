import Linearizability
import Testing
import TestGate

/// `HistoryShrinker`: a failing key's history cut down to the operations that make it fail, with
/// only sound removals (read-only operations, and the real-time suffix after the failure).
@Suite(.ownThread) struct ShrinkingTests {
    @Test("a stale read buried in hundreds of operations shrinks to the two writes and the read")
    func staleReadInALongHistory() throws {
        var history: [KeyValueOperation] = []
        var t: Int64 = 0
        for i in 0..<50 {  // reads of the absent key, before anything is written
            history.append(get(i % 4, nil, t, t + 5))
            t += 10
        }
        let stale = get(3, "v1", t + 40, t + 50)
        history += [put(1, "v1", t, t + 10), put(2, "v2", t + 20, t + 30), stale]
        t += 100
        for i in 0..<150 {  // a long, well-behaved tail
            history.append(i % 2 == 0 ? put(i % 4, "w\(i)", t, t + 5) : get(i % 4, "w\(i - 1)", t, t + 5))
            t += 10
        }
        let report = check(history)
        #expect(report.verdict == .notLinearizable)
        let violation = try #require(report.violations.first)
        #expect(violation.smallestFailingHistory == [put(1, "v1", 500, 510), put(2, "v2", 520, 530), stale])
        #expect(violation.description.contains("the smallest failing history found (3 operations"), "\(violation.description)")
    }

    @Test("the smallest history fails on its own, is part of the original, and keeps every write it needs")
    func soundness() throws {
        // A phantom read of "c": removing the writes would not change that it fails, but the
        // shrinker never removes a write that was called before the failing read returned.
        let history = [put(1, "a", 0, 10), get(2, "a", 20, 30), put(1, "b", 40, 50), get(2, "b", 60, 70),
                       cas(3, "x", "y", 80, 90, succeeded: false), get(2, "c", 100, 110), put(1, "d", 200, 210)]
        let smallest = HistoryShrinker().shrink(history)
        #expect(check(smallest).verdict == .notLinearizable)
        #expect(smallest.allSatisfy { history.contains($0) })
        #expect(smallest == [put(1, "a", 0, 10), put(1, "b", 40, 50), get(2, "c", 100, 110)])
    }

    @Test("an operation still pending when the failure happened keeps everything after it: no cut is sound there")
    func pendingWriteBlocksTheCut() {
        // The timed-out put may take effect at any time later, so the ops after it cannot be cut
        // away as "after everything kept"; only the reads go.
        let history = [put(1, "v1", 0, nil), put(2, "v2", 10, 20), get(3, "v0", 30, 40),
                       get(3, "v2", 50, 60), put(2, "v3", 70, 80)]
        let smallest = HistoryShrinker().shrink(history)
        #expect(check(smallest).verdict == .notLinearizable)
        #expect(smallest == [put(1, "v1", 0, nil), put(2, "v2", 10, 20), get(3, "v0", 30, 40), put(2, "v3", 70, 80)])
    }

    @Test("with no budget the history comes back as it was, sorted by call")
    func noBudget() {
        let history = [get(2, "z", 5, 6), put(1, "a", 0, 10)]
        #expect(HistoryShrinker(stepBudget: 0).shrink(history) == [put(1, "a", 0, 10), get(2, "z", 5, 6)])
    }
}
