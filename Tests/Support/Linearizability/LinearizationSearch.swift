/// What the search found for one partition of a history.
public struct LinearizationSearchResult<State> {
    public enum Verdict: Sendable, Equatable {
        case linearizable
        case notLinearizable
        /// The step budget ran out first: nothing is known, and nothing may be concluded.
        case budgetExhausted
    }

    public var verdict: Verdict
    /// Indices into the operations searched: a complete linearization when linearizable, otherwise
    /// the longest linearizable prefix the search reached (so far, when the budget ran out).
    public var linearization: [Int]
    /// The specification's state after `linearization`.
    public var stateAfterLinearization: State
    /// When not linearizable: the operations that could have come next after `linearization` (their
    /// calls precede the earliest return still pending), none of which the specification accepts
    /// there. Empty otherwise.
    public var stuckOperations: [Int]
    /// Search steps taken (one per event visited), to compare with the budget.
    public var steps: Int
}

extension LinearizationSearchResult: Sendable where State: Sendable {}

/// Wing & Gong's linearizability search with Lowe's memoisation, as porcupine's `checkSingle` does it,
/// iterative rather than recursive so that a long history cannot overflow the stack.
///
/// Walk the events in time order. At a call whose operation the specification accepts in the
/// current state, linearize it: push it, lift it (and its return) out of the list and restart from
/// the head, unless the same set of linearized operations already led to the same state (the
/// cache), which was explored before and failed. At a return, the operation returning there had to
/// be linearized before everything after it and no candidate worked: backtrack, pop the last
/// operation, put it back and try the one after it. An empty list is a linearization; a backtrack
/// with nothing to pop proves there is none.
///
/// Pure: no clock, no randomness, no I/O; the budget counts steps, so an exhausted search is
/// exhausted on every machine alike.
public enum LinearizationSearch {
    public static func run<Specification: SequentialSpecification>(
        _ operations: [HistoryOperation<Specification.Input, Specification.Output>],
        specification: Specification,
        stepBudget: Int
    ) -> LinearizationSearchResult<Specification.State> {
        var events = EventList(calls: operations.map(\.call), returns: operations.map(\.returnTime))
        var state = specification.initialState
        var linearized = Bitset(capacity: operations.count)
        var explored = Set<ExploredState<Specification.State>>()
        // Each linearized operation's call node and the state before it, to backtrack to.
        var stack: [(call: Int, stateBefore: Specification.State)] = []
        var longest: (linearization: [Int], state: Specification.State, stuck: [Int])?
        var steps = 0
        var node = events.first

        while !events.isEmpty {
            guard steps < stepBudget else {
                var result = LinearizationSearchResult(
                    verdict: .budgetExhausted, linearization: stack.map { events.operation(at: $0.call) },
                    stateAfterLinearization: state, stuckOperations: [], steps: steps
                )
                if let longest, longest.linearization.count > result.linearization.count {
                    result.linearization = longest.linearization
                    result.stateAfterLinearization = longest.state
                }
                return result
            }
            steps += 1

            if events.isCall(node) {
                let operation = events.operation(at: node)
                let candidate = operations[operation]
                if let next = specification.step(from: state, input: candidate.input, output: candidate.output) {
                    var withOperation = linearized
                    withOperation.insert(operation)
                    if explored.insert(ExploredState(linearized: withOperation, state: next)).inserted {
                        stack.append((node, state))
                        state = next
                        linearized = withOperation
                        events.lift(call: node)
                        node = events.first
                        continue
                    }
                }
                node = events.after(node)
            } else {
                // The deepest dead end is the one to report: there the specification accepts none
                // of the candidates (an accepted one found in the cache was explored before and
                // would have left a deeper dead end).
                if stack.count > (longest?.linearization.count ?? -1) {
                    longest = (stack.map { events.operation(at: $0.call) }, state, events.candidates)
                }
                guard let top = stack.popLast() else {
                    // `longest` is set: this very return recorded it if nothing deeper had.
                    return LinearizationSearchResult(
                        verdict: .notLinearizable, linearization: longest?.linearization ?? [],
                        stateAfterLinearization: longest?.state ?? state, stuckOperations: longest?.stuck ?? [], steps: steps
                    )
                }
                state = top.stateBefore
                linearized.remove(events.operation(at: top.call))
                events.unlift(call: top.call)
                node = events.after(top.call)
            }
        }
        return LinearizationSearchResult(
            verdict: .linearizable, linearization: stack.map { events.operation(at: $0.call) }, stateAfterLinearization: state,
            stuckOperations: [], steps: steps
        )
    }
}

/// A cache entry: the operations linearized and the state they led to. Two paths that linearize
/// the same operations into the same state have the same future, so the second is not explored.
private struct ExploredState<State: Hashable>: Hashable {
    var linearized: Bitset
    var state: State
}
