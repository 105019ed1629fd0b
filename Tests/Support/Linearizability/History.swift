/// How a call ended, as the client saw it.
public enum Outcome<Output> {
    /// The call returned `output` at `time` (the same monotonic clock as the call times).
    case returned(at: Int64, output: Output)
    /// The client never learned what happened: the call timed out or failed in a way that leaves its
    /// effect unknown (a broken connection mid-flight). The operation may have taken effect, may
    /// still take effect later, or may never take effect, so the checker treats it as returning at
    /// infinity with any output allowed (porcupine's and etcd's robustness tests' approach).
    case timedOut
}

extension Outcome: Sendable where Output: Sendable {}
extension Outcome: Equatable where Output: Equatable {}
extension Outcome: Hashable where Output: Hashable {}

/// One operation of a concurrent history: who called, what, when, and what came back.
///
/// Times are integers of one monotonic clock (nanoseconds, or a logical counter in tests). Two
/// operations overlap in real time unless one returned strictly before the other was called: a
/// return and a call at the same instant count as concurrent, which can only make the checker more
/// lenient, never report a violation that is not there.
public struct HistoryOperation<Input, Output> {
    /// The client (a connection, a worker) that issued the call; only for reports: the checker does
    /// not assume a client's operations are sequential, so a client may carry on after a timeout.
    public let client: Int
    /// When the client issued the call.
    public let call: Int64
    public let input: Input
    public let outcome: Outcome<Output>

    /// - Precondition: a returned operation does not return before it was called (the times come
    ///   from one monotonic clock).
    public init(client: Int, call: Int64, input: Input, outcome: Outcome<Output>) {
        if case .returned(let time, _) = outcome {
            precondition(time >= call, "operation of client \(client) returns at \(time), before its call at \(call)")
        }
        self.client = client
        self.call = call
        self.input = input
        self.outcome = outcome
    }

    /// The return time, or nil for an operation that timed out.
    public var returnTime: Int64? {
        if case .returned(let time, _) = outcome { return time }
        return nil
    }

    /// What came back, or nil for an operation that timed out (any output is allowed).
    public var output: Output? {
        if case .returned(_, let output) = outcome { return output }
        return nil
    }

    public var timedOut: Bool { returnTime == nil }
}

extension HistoryOperation: Sendable where Input: Sendable, Output: Sendable {}
extension HistoryOperation: Equatable where Input: Equatable, Output: Equatable {}
extension HistoryOperation: Hashable where Input: Hashable, Output: Hashable {}
