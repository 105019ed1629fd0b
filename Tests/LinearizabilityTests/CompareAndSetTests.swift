import Linearizability
import Testing
import TestGate

/// Compare-and-set against the register: it succeeds exactly when the key holds the expected value.
@Suite(.ownThread) struct CompareAndSetTests {
    @Test("successes and failures that agree with the register are linearizable")
    func consistent() {
        let report = check([
            cas(1, nil, "a", 0, 10, succeeded: true),  // the key did not exist
            cas(2, nil, "x", 20, 30, succeeded: false),  // now it does
            cas(1, "a", "b", 40, 50, succeeded: true),
            cas(2, "a", "c", 60, 70, succeeded: false),  // it holds b
            get(3, "b", 80, 90),
        ])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("a compare-and-set that failed although the key held the expected value is not linearizable")
    func failedWhenItShouldHaveSucceeded() throws {
        let failed = cas(2, "a", "b", 20, 30, succeeded: false)
        let report = check([put(1, "a", 0, 10), failed])
        let violation = try #require(report.violations.first)
        #expect(violation.unlinearizable == [failed])
        #expect(violation.valueAfterPrefix == "a")
    }

    @Test("a compare-and-set that succeeded although the key held another value is not linearizable")
    func succeededWhenItShouldHaveFailed() {
        #expect(check([put(1, "a", 0, 10), cas(2, "z", "b", 20, 30, succeeded: true)]).verdict == .notLinearizable)
    }

    @Test("two creates of an absent key cannot both succeed, even concurrently")
    func twoCreates() {
        #expect(check([cas(1, nil, "a", 0, 50, succeeded: true), cas(2, nil, "b", 10, 40, succeeded: true)]).verdict == .notLinearizable)
    }

    @Test("of two concurrent compare-and-sets from the same value, one succeeds and the other fails, either way round",
          arguments: [true, false])
    func concurrentRace(firstWins: Bool) {
        let report = check([
            put(1, "a", 0, 10),
            cas(2, "a", "b", 20, 60, succeeded: firstWins),
            cas(3, "a", "c", 30, 50, succeeded: !firstWins),
            get(1, firstWins ? "b" : "c", 70, 80),
        ])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("a value read after a compare-and-set succeeded must be the one it wrote, not the value before")
    func readAfterSuccess() {
        #expect(check([put(1, "a", 0, 10), cas(2, "a", "b", 20, 30, succeeded: true), get(3, "a", 40, 50)]).verdict == .notLinearizable)
    }

    @Test("a timed-out compare-and-set whose comparison held may have written its value")
    func timedOutAndApplied() {
        let report = check([put(1, "a", 0, 10), casTimedOut(2, "a", "b", 20), get(3, "b", 30, 40)])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("a timed-out compare-and-set whose comparison never held cannot have written its value")
    func timedOutAndImpossible() {
        let report = check([put(1, "a", 0, 10), casTimedOut(2, "z", "b", 20), get(3, "b", 30, 40)])
        #expect(report.verdict == .notLinearizable)
    }
}
