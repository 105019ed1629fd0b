@testable import Agent
import Foundation
import Testing

/// Polls `condition` every 20 ms until it holds; records a failure naming `what` and throws when
/// `timeout` passes first. Timeouts are generous: other builds share this 2-core machine.
func eventually(_ what: String, timeout: Duration = .seconds(60),
                sourceLocation: SourceLocation = #_sourceLocation,
                _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now >= deadline {
            Issue.record("timed out after \(timeout) waiting for \(what)", sourceLocation: sourceLocation)
            throw TestFailure("timed out waiting for \(what)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a timeout: a hung runtime call fails the test instead of hanging the run.
func withTimeout<T: Sendable>(_ timeout: Duration, _ what: String,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TestFailure("\(what) did not finish within \(timeout)")
        }
        return value
    }
}

extension [UInt8] {
    var text: String { String(decoding: self, as: UTF8.self) }
}

/// A runtime under test, in a form the shared scenarios can drive: Docker and processes alike.
struct RuntimeHarness: Sendable {
    var name: String
    /// A new runtime object with the same identity (owner or data directory): a "restarted worker".
    var make: @Sendable () async throws -> any TaskRuntime
    /// The task to run `command`: an image for Docker, ignored by processes.
    var task: @Sendable (_ id: String, _ command: [String]) -> RuntimeTask
    /// Sends `signal` to the task's main process from outside the runtime (a test-only back door).
    var signal: @Sendable (_ taskID: String, _ signal: Int32) async throws -> Void
    /// Removes everything the test left (also after a failure), then releases the runtimes.
    var cleanUp: @Sendable () async -> Void

    /// Runs `body`, then cleans up whatever happened.
    func run(_ body: (RuntimeHarness) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await cleanUp()
            throw error
        }
        await cleanUp()
    }
}

/// A unique task id per test, so tests sharing a runtime identity cannot collide.
func uniqueTaskID(_ label: String) -> String {
    "\(label)-\(UUID().uuidString.prefix(8).lowercased())"
}
