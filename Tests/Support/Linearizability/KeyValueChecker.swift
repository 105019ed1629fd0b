/// The answer to "is this history linearizable?".
public enum LinearizabilityVerdict: Sendable, Equatable {
    case linearizable
    /// At least one key's history has no linearization: a proof, whatever the other keys gave.
    case notLinearizable
    /// No violation was found, but the search budget ran out on some key before it decided: this is
    /// not a pass, and a harness must not count it as one.
    case unknown
}

/// One key whose history has no linearization, with what a person needs to see why.
public struct KeyViolation: Sendable, CustomStringConvertible {
    public var key: String
    /// This key's operations as checked (timed-out reads dropped), in the order given.
    public var operations: [KeyValueOperation]
    /// The longest prefix of a linearization that the search found, in linearization order.
    public var longestLinearizablePrefix: [KeyValueOperation]
    /// The key's value after that prefix (nil: the key does not exist).
    public var valueAfterPrefix: String?
    /// The operations that could have come next after the prefix (their calls precede the earliest
    /// pending return), none of which the register accepts there.
    public var unlinearizable: [KeyValueOperation]
    /// A sub-history that fails on its own (`HistoryShrinker`): usually a handful of operations
    /// where the whole key's history has hundreds.
    public var smallestFailingHistory: [KeyValueOperation]
    /// A few lines: the key, the size of the prefix, the value it leaves, the operations that do
    /// not fit and the last ones that did.
    public var description: String
}

/// What `KeyValueLinearizabilityChecker.check` found, key by key.
public struct LinearizabilityReport: Sendable {
    public var verdict: LinearizabilityVerdict
    /// The keys whose histories are not linearizable, ordered by key.
    public var violations: [KeyViolation]
    /// The keys on which the budget ran out before the search decided, ordered.
    public var undecidedKeys: [String]
    public var keysChecked: Int
    /// Operations given to the search: the history less the timed-out reads.
    public var operationsChecked: Int
    /// Reads that timed out: they changed nothing and tell nothing, so they are not checked.
    public var timedOutReadsDropped: Int
    /// Search steps over all keys.
    public var searchSteps: Int

    /// One line for a log, then each violation's description.
    public var summary: String {
        var counts = "\(counted(keysChecked, "key")), \(counted(operationsChecked, "operation"))"
        if timedOutReadsDropped > 0 { counts += " (\(counted(timedOutReadsDropped, "timed-out read")) dropped)" }
        counts += ", \(counted(searchSteps, "search step"))"
        let undecided = undecidedKeys.isEmpty
            ? "" : "; the search budget ran out on \(undecidedKeys.map { describeValue($0) }.joined(separator: ", "))"
        switch verdict {
        case .linearizable:
            return "linearizable: \(counts)"
        case .unknown:
            return "unknown: \(counts)\(undecided)"
        case .notLinearizable:
            let keys = violations.map { describeValue($0.key) }.joined(separator: ", ")
            let header = "not linearizable on \(keys): \(counts)\(undecided)"
            return ([header] + violations.map(\.description)).joined(separator: "\n")
        }
    }
}

/// Checks a register workload's history against an etcd-style key-value store: put, get and
/// compare-and-set, each on one key.
///
/// The history is split per key (porcupine's partitioning: linearizability is compositional, so
/// the history is linearizable exactly when every key's is) and each key is searched on its own,
/// with its own step budget. Pure and deterministic: the same history gives the same report.
public struct KeyValueLinearizabilityChecker: Sendable {
    /// The most search steps spent on one key before it is reported undecided. A step visits one
    /// event; a thousand well-behaved operations on a key take a few thousand.
    public var stepBudgetPerKey: Int
    /// The search steps spent shrinking each failing key's history to a small witness.
    public var shrinkStepBudget = 2_000_000
    /// The values of keys that existed before the history began; the others start absent.
    public var initialValues: [String: String]

    public init(stepBudgetPerKey: Int = 10_000_000, initialValues: [String: String] = [:]) {
        self.stepBudgetPerKey = stepBudgetPerKey
        self.initialValues = initialValues
    }

    public func check(_ history: [KeyValueOperation]) -> LinearizabilityReport {
        var operationsByKey: [String: [KeyValueOperation]] = [:]
        var timedOutReads = 0
        for operation in history {
            if case .get = operation.input, operation.timedOut {
                timedOutReads += 1
                continue
            }
            operationsByKey[operation.input.key, default: []].append(operation)
        }

        var report = LinearizabilityReport(
            verdict: .linearizable, violations: [], undecidedKeys: [], keysChecked: operationsByKey.count,
            operationsChecked: history.count - timedOutReads, timedOutReadsDropped: timedOutReads, searchSteps: 0
        )
        for key in operationsByKey.keys.sorted() {
            let operations = operationsByKey[key] ?? []
            let result = LinearizationSearch.run(
                operations, specification: KeyValueRegister(initialValue: initialValues[key]), stepBudget: stepBudgetPerKey
            )
            report.searchSteps += result.steps
            switch result.verdict {
            case .linearizable:
                break
            case .budgetExhausted:
                report.undecidedKeys.append(key)
            case .notLinearizable:
                let smallest = HistoryShrinker(stepBudget: shrinkStepBudget).shrink(operations, initialValue: initialValues[key])
                report.violations.append(Self.violation(key: key, operations: operations, result: result, smallest: smallest))
            }
        }
        if !report.violations.isEmpty {
            report.verdict = .notLinearizable
        } else if !report.undecidedKeys.isEmpty {
            report.verdict = .unknown
        }
        return report
    }

    /// How many operations of the prefix a description shows: the last ones, where it went wrong.
    static let prefixLinesShown = 5

    static func violation(
        key: String, operations: [KeyValueOperation], result: LinearizationSearchResult<KeyValueRegister.State>,
        smallest: [KeyValueOperation]
    ) -> KeyViolation {
        let prefix = result.linearization.map { operations[$0] }
        let stuck = result.stuckOperations.map { operations[$0] }
        let value = result.stateAfterLinearization.value
        var lines = [
            "key \(describeValue(key)) is not linearizable: the longest linearizable prefix found has \(prefix.count) of "
                + "\(counted(operations.count, "operation")) and leaves the value \(describeValue(value)), "
                + "where no operation that could come next fits:",
            renderLines(stuck, indent: "  "),
        ]
        if !prefix.isEmpty {
            let shown = prefix.suffix(prefixLinesShown)
            lines.append(shown.count == prefix.count ? "the prefix:" : "the prefix ends with (last \(shown.count)):")
            lines.append(renderLines(Array(shown), indent: "  "))
        }
        if smallest.count < operations.count {
            lines.append("the smallest failing history found (\(counted(smallest.count, "operation")), by call time):")
            lines.append(renderLines(smallest, indent: "  "))
        }
        return KeyViolation(
            key: key, operations: operations, longestLinearizablePrefix: prefix, valueAfterPrefix: value,
            unlinearizable: stuck, smallestFailingHistory: smallest, description: lines.joined(separator: "\n")
        )
    }
}

/// "1 key", "3 keys".
func counted(_ count: Int, _ singular: String) -> String {
    "\(count) \(singular)\(count == 1 ? "" : "s")"
}
