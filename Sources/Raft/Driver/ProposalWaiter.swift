import Synchronization

/// Who waits for a proposal's answer: one caller, or one command of a batch whose caller is
/// answered once every command of it is (`RaftNode.propose(batch:)`).
enum ProposalWaiter: Sendable {
    case single(CheckedContinuation<[UInt8], any Error>)
    case batched(ProposalBatch, Int)

    func resume(returning result: [UInt8]) {
        switch self {
        case .single(let continuation): continuation.resume(returning: result)
        case .batched(let batch, let i): batch.settle(i, .success(result))
        }
    }

    func resume(throwing error: any Error) {
        switch self {
        case .single(let continuation): continuation.resume(throwing: error)
        case .batched(let batch, let i): batch.settle(i, .failure(error))
        }
    }
}

/// The answers of a batch of proposals, handed to its caller at once when the last arrives. One
/// continuation for the batch instead of one task per command: a leader took a task, a
/// continuation and a thread wake-up per forwarded write.
final class ProposalBatch: Sendable {
    private struct State {
        var results: [Result<[UInt8], any Error>?]
        var remaining: Int
    }

    private let state: Mutex<State>
    private let continuation: CheckedContinuation<[Result<[UInt8], any Error>], Never>

    init(count: Int, continuation: CheckedContinuation<[Result<[UInt8], any Error>], Never>) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
        self.continuation = continuation
        if count == 0 { continuation.resume(returning: []) }
    }

    /// Answers command `i` (once; a second answer is ignored); the last answer resumes the caller.
    func settle(_ i: Int, _ result: Result<[UInt8], any Error>) {
        let done = state.withLock { s -> [Result<[UInt8], any Error>]? in
            guard s.results[i] == nil else { return nil }
            s.results[i] = result
            s.remaining -= 1
            return s.remaining == 0 ? s.results.map { $0! } : nil
        }
        if let done { continuation.resume(returning: done) }
    }

    /// Answers every command not yet answered with `error`.
    func settleAll(_ error: any Error) {
        let count = state.withLock { $0.results.count }
        for i in 0..<count { settle(i, .failure(error)) }
    }
}
