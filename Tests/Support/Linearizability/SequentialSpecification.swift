/// The sequential behaviour of the object under test: porcupine's `Model` without partitioning.
///
/// A history is linearizable when its operations can be put in one order that respects real time
/// (an operation that returned before another was called comes first) and that this specification
/// accepts from `initialState`, step by step.
///
/// Implementations must be pure: the search calls `step` many times on the same states and caches
/// the states it has seen, so equal inputs must give equal answers.
public protocol SequentialSpecification {
    associatedtype Input
    associatedtype Output
    /// Hashable because the search remembers (linearized operations, state) pairs it has explored.
    associatedtype State: Hashable

    var initialState: State { get }

    /// The state after `input` takes effect in `state` and answers `output`, or nil when the object
    /// could not have answered `output` there. A nil `output` means the caller never learned the
    /// answer (the operation timed out): accept every answer the object could have given.
    func step(from state: State, input: Input, output: Output?) -> State?

    /// The state in words, for reports.
    func describe(_ state: State) -> String
}
