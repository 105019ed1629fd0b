import Synchronization
import Testing
@testable import Orchestrator

@Suite struct DeadlineTests {
    struct Boom: Error {}

    @Test("the operation's value or error comes through when it finishes in time")
    func passesThrough() async throws {
        #expect(try await withDeadline(.seconds(5)) { 42 } == 42)
        await #expect(throws: Boom.self) { try await withDeadline(.seconds(5)) { () async throws -> Int in throw Boom() } }
    }

    @Test("past the deadline it returns while the operation, which ignores cancellation, still runs, and cancels it")
    func returnsOnTime() async throws {
        let operation = HeldOperation()
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(50)) { () async throws -> Int in
                // Not cancellable from outside, as a store stuck in consensus: it ends only when
                // released. No wall-clock bound here (a busy test process can delay any timer);
                // what proves "at once" is that withDeadline returned before the release.
                await withTaskCancellationHandler {
                    await operation.waitForRelease()
                } onCancel: {
                    operation.markCancelled()
                }
                return 0
            }
        }
        #expect(operation.release() == .stillRunning)
        #expect(operation.wasCancelled)
    }

    @Test("cancelling the caller cancels the operation and ends the wait")
    func callerCancelled() async throws {
        let task = Task {
            try await withDeadline(.seconds(30)) { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 0
            }
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}

/// An operation that runs until the test releases it, and remembers whether it was cancelled.
private final class HeldOperation: Sendable {
    enum ReleaseOutcome: Equatable { case stillRunning, alreadyReleased }

    private struct State {
        var waiter: CheckedContinuation<Void, Never>?
        var released = false
        var cancelled = false
    }

    private let state = Mutex(State())

    init() {
        // Should withDeadline wrongly wait for the operation, the test would hang; release it
        // after a minute so that it fails instead (release() then reports alreadyReleased).
        Task { [weak self] in
            try? await Task.sleep(for: .seconds(60))
            _ = self?.release()
        }
    }

    func waitForRelease() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { s -> Bool in
                if s.released { return true }
                s.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Lets the operation finish; says whether it was still running.
    func release() -> ReleaseOutcome {
        let (outcome, waiter) = state.withLock { s -> (ReleaseOutcome, CheckedContinuation<Void, Never>?) in
            if s.released { return (.alreadyReleased, nil) }
            s.released = true
            defer { s.waiter = nil }
            return (.stillRunning, s.waiter)
        }
        waiter?.resume()
        return outcome
    }

    func markCancelled() { state.withLock { $0.cancelled = true } }
    var wasCancelled: Bool { state.withLock { $0.cancelled } }
}
