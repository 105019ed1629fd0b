import Linearizability
import Testing
import TestGate

/// The history is split per key and each key checked on its own.
@Suite(.ownThread) struct MultipleKeysTests {
    @Test("with several keys and one violated, the report names that key and only that key")
    func oneKeyViolated() throws {
        let report = check([
            put(1, "a1", 0, 10, key: "a"),
            put(2, "b1", 5, 15, key: "b"),
            put(3, "c1", 8, 18, key: "c"),
            get(1, "a1", 20, 30, key: "a"),
            put(2, "b2", 20, 30, key: "b"),
            get(3, "b1", 40, 50, key: "b"),  // stale: put b2 returned at 30
            get(1, "c1", 40, 50, key: "c"),
        ])
        #expect(report.verdict == .notLinearizable)
        #expect(report.keysChecked == 3)
        #expect(report.violations.map(\.key) == ["b"])
        let violation = try #require(report.violations.first)
        #expect(violation.operations.allSatisfy { $0.input.key == "b" })
        #expect(violation.unlinearizable == [get(3, "b1", 40, 50, key: "b")])
        #expect(report.summary.hasPrefix("not linearizable on \"b\": 3 keys, 7 operations"), "\(report.summary)")
    }

    @Test("operations on different keys do not constrain each other")
    func keysIndependent() {
        // Were a and b one register, the second read of a would be stale.
        let report = check([put(1, "x", 0, 10, key: "a"), put(2, "y", 20, 30, key: "b"), get(3, "x", 40, 50, key: "a")])
        #expect(report.verdict == .linearizable, "\(report.summary)")
    }

    @Test("every violated key is reported, in key order")
    func allViolationsReported() {
        let report = check([get(1, "ghost", 0, 10, key: "z"), get(2, "ghost", 0, 10, key: "m"), get(3, nil, 0, 10, key: "a")])
        #expect(report.violations.map(\.key) == ["m", "z"])
    }
}
