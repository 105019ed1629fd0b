import Linearizability
import Testing
import TestGate

/// The step budget: a history the search cannot decide in time is "unknown", never a pass.
@Suite(.ownThread) struct BudgetTests {
    /// `writers` puts that all overlap, then a read of a value none of them wrote: to prove it, the
    /// search must try every subset of the puts with every last value, about writers * 2^(writers-1)
    /// states.
    static func pathological(writers: Int) -> [KeyValueOperation] {
        let puts = (0..<writers).map { put($0, "v\($0)", Int64($0), 1_000 + Int64($0)) }
        return puts + [get(writers, "never written", 2_000, 2_010)]
    }

    @Test("a history too hard for the budget is unknown, with the key named, not linearizable")
    func exhausted() {
        let report = KeyValueLinearizabilityChecker(stepBudgetPerKey: 1_000).check(Self.pathological(writers: 10))
        #expect(report.verdict == .unknown, "\(report.summary)")
        #expect(report.undecidedKeys == ["k"])
        #expect(report.violations.isEmpty)
        #expect(report.searchSteps == 1_000)
        #expect(report.summary.hasPrefix("unknown: "), "\(report.summary)")
        #expect(report.summary.contains("the search budget ran out on \"k\""), "\(report.summary)")
    }

    @Test("the same history with the default budget is decided: not linearizable")
    func decidedWithBudget() {
        let report = check(Self.pathological(writers: 10))
        #expect(report.verdict == .notLinearizable, "\(report.summary)")
        #expect(report.searchSteps > 1_000)
    }

    @Test("a linearizable history is unknown under a budget too small for it, and linearizable once the budget suffices")
    func neverAPassUnchecked() {
        // Two steps: linearize the put, then the get; the budget is checked only while work remains.
        let history = [put(1, "v1", 0, 10), get(2, "v1", 20, 30)]
        #expect(KeyValueLinearizabilityChecker(stepBudgetPerKey: 0).check(history).verdict == .unknown)
        #expect(KeyValueLinearizabilityChecker(stepBudgetPerKey: 1).check(history).verdict == .unknown)
        #expect(KeyValueLinearizabilityChecker(stepBudgetPerKey: 2).check(history).verdict == .linearizable)
    }

    @Test("a violation on one key is reported as such even when another key ran out of budget")
    func violationBeatsUnknown() {
        let hard = Self.pathological(writers: 10).map { operation in
            KeyValueOperation(
                client: operation.client, call: operation.call, input: rekeyed(operation.input, to: "hard"), outcome: operation.outcome
            )
        }
        let report = KeyValueLinearizabilityChecker(stepBudgetPerKey: 1_000).check(hard + [get(1, "ghost", 0, 10, key: "easy")])
        #expect(report.verdict == .notLinearizable, "\(report.summary)")
        #expect(report.violations.map(\.key) == ["easy"])
        #expect(report.undecidedKeys == ["hard"])
    }

    private func rekeyed(_ input: KeyValueInput, to key: String) -> KeyValueInput {
        switch input {
        case .put(_, let value): .put(key: key, value: value)
        case .get: .get(key: key)
        case .compareAndSet(_, let expected, let new): .compareAndSet(key: key, expected: expected, new: new)
        }
    }
}
