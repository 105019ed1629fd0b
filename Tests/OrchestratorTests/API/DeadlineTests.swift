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

    @Test("past the deadline it returns at once, even when the operation ignores cancellation, and cancels it")
    func returnsOnTime() async throws {
        let cancelled = Mutex(false)
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(50)) { () async throws -> Int in
                // Not cancellable from outside: an unstructured task, as a store stuck in consensus.
                await withTaskCancellationHandler {
                    _ = await Task { try? await Task.sleep(for: .seconds(10)) }.value
                } onCancel: {
                    cancelled.withLock { $0 = true }
                }
                return 0
            }
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(cancelled.withLock { $0 })
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
