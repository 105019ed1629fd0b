import Foundation
import Testing

/// `@Suite(.ownThread)` or `@Test(.ownThread)`: every test case runs on a thread of its own
/// instead of Swift concurrency's cooperative pool.
///
/// The pool has one thread per core (two on CI) and never preempts a job. A synchronous test
/// that computes or writes to disk for seconds (a simulation, a reference-model run, a crash
/// test) holds one of those threads the whole time; two of them hold the pool, and every timer
/// of the process stalls: elections, heartbeats, deadlines, in the other suites running beside
/// them. On a thread of its own the work is time-sliced by the kernel like any other thread.
public struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Each test case (each argument of a parameterized test) gets its own thread; the
        // suite itself needs none.
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let executor = ThreadExecutor(name: test.name)
        defer { executor.shutdown() }
        // A nonisolated async function (the test's body, synchronous or not) runs on the task's
        // preferred executor; structured child tasks inherit the preference.
        try await withTaskExecutorPreference(executor) {
            try await function()
        }
    }
}

extension OwnThreadTrait {
    /// The name of the test whose own thread this is; nil on any other thread (the pool's).
    public static var testOnThisThread: String? {
        Thread.current.threadDictionary[threadKey] as? String
    }

    static let threadKey = "TestGate.OwnThreadTrait.test"
}

extension Trait where Self == OwnThreadTrait {
    /// Runs each test case on a thread of its own: see `OwnThreadTrait`.
    public static var ownThread: Self { OwnThreadTrait() }
}

/// A task executor backed by one dedicated thread that runs its jobs in order.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in
            // Set on the thread itself: Linux threads start with their creator's name (here the
            // pool's), and a name set before start() is not applied.
            Thread.current.name = "own test thread"
            Thread.current.threadDictionary[OwnThreadTrait.threadKey] = name
            runJobs()
        }
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        if stopped {
            condition.unlock()
            // A straggler after the test ended (it should not happen: structured children end
            // with the test); run it rather than lose it.
            Thread.detachNewThread { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread ends once the jobs already queued have run.
    func shutdown() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
