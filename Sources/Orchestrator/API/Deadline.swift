import Synchronization

/// The deadline passed before the operation finished.
struct DeadlineExceeded: Error {}

/// Runs `operation` but returns (throwing `DeadlineExceeded`) once `limit` has passed, cancelling
/// it. Unlike a task group this returns on time even when the operation ignores cancellation (a
/// write held by a store that waits for a leader), which is the point: the client gets its 503.
func withDeadline<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let gate = Gate<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work = Task {
                do { gate.resume(continuation, with: .success(try await operation())) } catch {
                    gate.resume(continuation, with: .failure(error))
                }
            }
            let timer = Task {
                try? await Task.sleep(for: limit)
                if gate.resume(continuation, with: .failure(Task.isCancelled ? CancellationError() : DeadlineExceeded())) {
                    work.cancel()
                }
            }
            gate.install(work: work, timer: timer)
        }
    } onCancel: {
        gate.cancel()
    }
}

/// Resumes a continuation exactly once and remembers the two tasks racing for it.
private final class Gate<T: Sendable>: Sendable {
    private struct State {
        var done = false
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var cancelled = false
    }

    private let state = Mutex(State())

    /// True if this call resumed the continuation (the first to finish wins).
    @discardableResult
    func resume(_ c: CheckedContinuation<T, any Error>, with result: Result<T, any Error>) -> Bool {
        let (first, timer) = state.withLock { s -> (Bool, Task<Void, Never>?) in
            if s.done { return (false, nil) }
            s.done = true
            return (true, s.timer)
        }
        guard first else { return false }
        timer?.cancel()
        c.resume(with: result)
        return true
    }

    func install(work: Task<Void, Never>, timer: Task<Void, Never>) {
        let (cancelled, done) = state.withLock { s in
            s.work = work
            s.timer = timer
            return (s.cancelled, s.done)
        }
        // Either may have happened before the tasks were known here.
        if cancelled {
            work.cancel()
            timer.cancel()
        } else if done {
            timer.cancel()
        }
    }

    /// The caller was cancelled: cancel the operation; the timer then resumes with CancellationError
    /// unless the operation finishes first.
    func cancel() {
        let (work, timer) = state.withLock { s in
            s.cancelled = true
            return (s.work, s.timer)
        }
        work?.cancel()
        timer?.cancel()
    }
}
