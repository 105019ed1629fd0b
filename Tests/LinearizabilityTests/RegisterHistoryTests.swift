import Linearizability
import Testing
import TestGate

/// Hand-made histories of one key, each small enough to decide by hand; the comment says why.
@Suite(.ownThread) struct RegisterHistoryTests {
    @Test("an empty history is linearizable")
    func empty() {
        let report = check([])
        #expect(report.verdict == .linearizable)
        #expect(report.keysChecked == 0)
    }

    @Test("sequential puts and gets that read the last write are linearizable")
    func sequential() {
        let report = check([
            get(1, nil, 0, 5),
            put(1, "v1", 10, 20),
            get(2, "v1", 30, 40),
            put(2, "v2", 50, 60),
            get(1, "v2", 70, 80),
        ])
        #expect(report.verdict == .linearizable, "\(report.summary)")
        #expect(report.operationsChecked == 5)
    }

    @Test("a read of a value no write produced is not linearizable")
    func phantomRead() throws {
        let phantom = get(2, "v9", 30, 40)
        let report = check([put(1, "v1", 0, 10), phantom])
        #expect(report.verdict == .notLinearizable)
        let violation = try #require(report.violations.first)
        #expect(violation.key == "k")
        #expect(violation.longestLinearizablePrefix == [put(1, "v1", 0, 10)])
        #expect(violation.valueAfterPrefix == "v1")
        #expect(violation.unlinearizable == [phantom])
    }

    @Test("concurrent writes may take effect in either order, so a later read may see either", arguments: ["v1", "v2"])
    func concurrentWrites(seen: String) {
        // put v1 [0, 100] and put v2 [10, 90] overlap; the read starts after both returned.
        let report = check([put(1, "v1", 0, 100), put(2, "v2", 10, 90), get(3, seen, 110, 120)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("after concurrent writes, two later reads cannot disagree: no write remains to change the value")
    func concurrentWritesThenDisagreement() {
        let report = check([put(1, "v1", 0, 100), put(2, "v2", 10, 90), get(3, "v1", 110, 120), get(3, "v2", 130, 140)])
        #expect(report.verdict == .notLinearizable)
    }

    @Test("a read concurrent with a write may see the old value or the new one", arguments: [nil, "v1"])
    func readDuringWrite(seen: String?) {
        let report = check([put(1, "v1", 10, 50), get(2, seen, 20, 30)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("a stale read (v1 read after put v2 returned, as from a lagging follower) is not linearizable")
    func staleRead() throws {
        let stale = get(3, "v1", 40, 50)
        let report = check([put(1, "v1", 0, 10), put(2, "v2", 20, 30), stale])
        #expect(report.verdict == .notLinearizable)
        let violation = try #require(report.violations.first)
        #expect(violation.longestLinearizablePrefix == [put(1, "v1", 0, 10), put(2, "v2", 20, 30)])
        #expect(violation.valueAfterPrefix == "v2")
        #expect(violation.unlinearizable == [stale])
    }

    @Test("a read may see the value of a write that timed out: it may have taken effect")
    func readOfTimedOutWrite() {
        let report = check([put(1, "v1", 0, 10), put(2, "v2", 20, nil), get(3, "v2", 30, 40)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("a read may miss a write that timed out: it may never have taken effect")
    func timedOutWriteNeverSeen() {
        let report = check([put(1, "v1", 0, 10), put(2, "v2", 20, nil), get(3, "v1", 30, 40), get(3, "v1", 1_000, 1_010)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("once a read saw a timed-out write's value, a later read cannot see the old value again")
    func timedOutWriteSeenThenUnseen() throws {
        let report = check([put(1, "v1", 0, 10), put(2, "v2", 20, nil), get(3, "v2", 30, 40), get(3, "v1", 50, 60)])
        #expect(report.verdict == .notLinearizable)
        let violation = try #require(report.violations.first)
        #expect(violation.unlinearizable.contains(get(3, "v1", 50, 60)))
    }

    @Test("a timed-out write cannot be seen before it was called: only its return is at infinity")
    func timedOutWriteSeenTooEarly() {
        let report = check([get(1, "v2", 0, 10), put(2, "v2", 20, nil)])
        #expect(report.verdict == .notLinearizable)
    }

    @Test("a read that timed out is dropped, whatever else happened")
    func timedOutReadDropped() {
        let report = check([put(1, "v1", 0, 10), .getTimedOut(client: 2, key: "k", call: 5), get(3, "v1", 20, 30)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
        #expect(report.timedOutReadsDropped == 1)
        #expect(report.operationsChecked == 2)
    }

    @Test("keys that existed before the history start from their initial values")
    func initialValues() {
        let history = [get(1, "v0", 0, 10), put(1, "v1", 20, 30)]
        #expect(check(history, initialValues: ["k": "v0"]).verdict == .linearizable)
        #expect(check(history).verdict == .notLinearizable)
    }

    @Test("an answer of the wrong kind (a get that answered 'written') is never accepted")
    func wrongKindOfAnswer() {
        let mixedUp = KeyValueOperation(client: 1, call: 0, input: .get(key: "k"), outcome: .returned(at: 10, output: .written))
        #expect(check([mixedUp]).verdict == .notLinearizable)
    }

    @Test("the same history gives the same report, word for word")
    func deterministic() {
        let history = [put(1, "v1", 0, 10), put(2, "v2", 5, 30), get(3, "v1", 40, 50), get(4, "v2", 45, 55)]
        #expect(check(history).summary == check(history).summary)
        #expect(check(history).verdict == .notLinearizable)
    }
}
