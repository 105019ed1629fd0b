/// The smallest failing history: of a key's operations that have no linearization, a sub-history
/// that still has none, found by removing only what cannot matter to the verdict, so the witness
/// is sound (a failure of the small history proves the failure of the whole).
///
/// Two removals are sound:
/// - **Read-only operations**: a get, or a compare-and-set that answered "not set". A
///   linearization of the whole history, with them taken out, is one of the rest: they change no
///   state, so every other operation still sees what it saw.
/// - **A suffix in real time**: the operations called after every kept one had returned. Real-time
///   order puts them after all the kept ones in any linearization, so nothing kept depends on them.
///
/// Writes inside the window are never removed: a read of their value would then look like a
/// phantom, a failure the whole history does not have.
///
/// Cuts the suffix first (a binary search over the valid cuts: a longer valid prefix of a failing
/// prefix fails too), then removes read-only operations in chunks of halving size (delta
/// debugging), keeping each removal that still fails. Deterministic, with a step budget shared by
/// every search it runs; when the budget runs out it returns the smallest failing history so far.
public struct HistoryShrinker: Sendable {
    public var stepBudget: Int

    public init(stepBudget: Int = 2_000_000) {
        self.stepBudget = stepBudget
    }

    /// `operations` are one key's, and have no linearization from `initialValue`.
    public func shrink(_ operations: [KeyValueOperation], initialValue: String? = nil) -> [KeyValueOperation] {
        var budget = stepBudget
        let register = KeyValueRegister(initialValue: initialValue)
        func fails(_ candidate: [KeyValueOperation]) -> Bool? {
            guard budget > 0 else { return nil }
            let result = LinearizationSearch.run(candidate, specification: register, stepBudget: budget)
            budget -= result.steps
            switch result.verdict {
            case .notLinearizable: return true
            case .linearizable: return false
            case .budgetExhausted: return nil
            }
        }

        // 1. The shortest failing prefix in call order among the cuts that are sound.
        var current = operations.sorted { ($0.call, $0.client) < ($1.call, $1.client) }
        let cuts = Self.soundCuts(current)
        var low = 0, high = cuts.count - 1  // cuts[high] == current.count always fails
        while low < high {
            let middle = (low + high) / 2
            switch fails(Array(current.prefix(cuts[middle]))) {
            case true?: high = middle
            case false?: low = middle + 1
            case nil: low = high
            }
        }
        if let cut = cuts.last, cuts[high] < cut { current = Array(current.prefix(cuts[high])) }

        // 2. Read-only operations out, in chunks of halving size.
        var chunk = max(1, current.count / 2)
        while budget > 0 {
            var index = 0
            var removedAny = false
            while index < current.count, budget > 0 {
                let window = index..<min(current.count, index + chunk)
                guard current[window].allSatisfy(Self.isReadOnly) else {
                    index += 1
                    continue
                }
                var candidate = current
                candidate.removeSubrange(window)
                if fails(candidate) == true {
                    current = candidate
                    removedAny = true
                } else {
                    index += chunk
                }
            }
            if chunk == 1 && !removedAny { break }
            chunk = max(1, chunk / 2)
        }
        return current
    }

    /// Prefix lengths (of `sorted`, in call order) after which every remaining operation was
    /// called after every kept one returned; always ends with the whole length.
    static func soundCuts(_ sorted: [KeyValueOperation]) -> [Int] {
        var cuts: [Int] = []
        var latestReturn = Int64.min
        for (i, operation) in sorted.enumerated() {
            if i > 0, operation.call > latestReturn { cuts.append(i) }
            latestReturn = max(latestReturn, operation.returnTime ?? .max)
        }
        cuts.append(sorted.count)
        return cuts
    }

    /// Changes nothing whatever the state: a get, or a compare-and-set that answered "not set".
    static func isReadOnly(_ operation: KeyValueOperation) -> Bool {
        switch (operation.input, operation.output) {
        case (.get, _): true
        case (.compareAndSet, .compareAndSet(succeeded: false)?): true
        default: false
        }
    }
}
