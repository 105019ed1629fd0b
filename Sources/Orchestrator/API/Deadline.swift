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
                gate.resume(continuation, with: .failure(Task.isCancelled ? CancellationError() : DeadlineExceeded()), cancellingWork: true)
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
        /// The timer won before the work task was installed: cancel it on install.
        var cancelWorkOnInstall = false
    }

    private let state = Mutex(State())

    /// Resumes the continuation unless the other task already did (the first to finish wins).
    /// With `cancellingWork` (the timer), the operation is cancelled before the caller resumes, so
    /// a caller that sees `DeadlineExceeded` knows the operation has been told to stop.
    func resume(_ c: CheckedContinuation<T, any Error>, with result: Result<T, any Error>, cancellingWork: Bool = false) {
        let (first, timer, work) = state.withLock { s -> (Bool, Task<Void, Never>?, Task<Void, Never>?) in
            if s.done { return (false, nil, nil) }
            s.done = true
            if cancellingWork && s.work == nil { s.cancelWorkOnInstall = true }
            return (true, s.timer, s.work)
        }
        guard first else { return }
        timer?.cancel()
        if cancellingWork { work?.cancel() }
        c.resume(with: result)
    }

    func install(work: Task<Void, Never>, timer: Task<Void, Never>) {
        let (cancelled, done, cancelWork) = state.withLock { s in
            s.work = work
            s.timer = timer
            return (s.cancelled, s.done, s.cancelWorkOnInstall)
        }
        // Any of these may have happened before the tasks were known here.
        if cancelled || cancelWork { work.cancel() }
        if cancelled || done { timer.cancel() }
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
