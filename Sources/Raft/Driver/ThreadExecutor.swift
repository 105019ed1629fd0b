#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A serial executor with a thread of its own: where a `RaftNode`'s loop runs.
///
/// The loop syncs the disk and applies entries synchronously. On the cooperative pool (as many
/// threads as cores, two on the machine we measure on) it waited whenever other long jobs held
/// every pool thread: an image of 100,000 tasks being encoded, a scheduling pass over a backlog,
/// a reconciliation pass over every task. A leader whose loop waits past an election timeout
/// sends no heartbeats and is deposed: placing 100,000 tasks on 5,000 nodes changed leaders twice
/// in one run. A thread of its own is time-sliced by the kernel like any other and never waits
/// for the pool.
///
/// The thread starts with the first job and ends after `idleTimeout` without one (the next job
/// starts another), so a node that stopped leaves no thread behind; one thread at most runs jobs
/// at any time, in the order they were enqueued.
public final class ThreadExecutor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // The lock guards `jobs`, `running` and `runner`; the condition wakes an idle thread.
    private let condition = MonotonicCondition()
    private var jobs: [UnownedJob] = []
    private var running = false
    private var runner: pthread_t?
    private let idleTimeout: Duration
    private let name: String

    /// - Parameters:
    ///   - name: what the executor is for, in the message of a failed isolation check.
    ///   - idleTimeout: how long the thread waits for a job before it ends.
    public init(name: String, idleTimeout: Duration = .seconds(2)) {
        self.name = name
        self.idleTimeout = idleTimeout
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        let start = !running
        running = true
        if !start { condition.signal() }
        condition.unlock()
        if start { startThread() }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func checkIsolated() {
        condition.lock()
        let onRunner = runner.map { pthread_equal($0, pthread_self()) != 0 } ?? false
        condition.unlock()
        precondition(onRunner, "not on the \(name) thread")
    }

    private func startThread() {
        // The thread holds the executor until it ends, so jobs never outlive it. Without its
        // thread no job of the node would ever run: stopping is the honest answer.
        precondition(spawnDetachedThread { [self] in runJobs() }, "cannot start the \(name) thread")
    }

    private func runJobs() {
        condition.lock()
        runner = pthread_self()
        condition.unlock()
        var batch: [UnownedJob] = []
        while takeJobs(into: &batch) {
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// Waits up to `idleTimeout` for jobs and moves them into `batch`; false (the thread ends)
    /// when none came.
    private func takeJobs(into batch: inout [UnownedJob]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if jobs.isEmpty {
            let deadline = MonotonicCondition.deadline(after: idleTimeout)
            // A signal or a spurious wake-up: check again.
            while jobs.isEmpty, condition.wait(until: deadline) {}
        }
        if jobs.isEmpty {
            // Under the lock: the next enqueue sees `running` false and starts a new thread.
            running = false
            runner = nil
            return false
        }
        swap(&batch, &jobs)
        return true
    }
}

/// Runs `body` once on a new thread of its own (detached): for long synchronous work, such as
/// encoding and writing a snapshot image, that would otherwise hold a cooperative pool thread
/// for seconds.
func runOnOwnThread(_ body: @escaping @Sendable () -> Void) {
    // No thread to be had: run it here rather than not at all.
    if !spawnDetachedThread(body) { body() }
}

/// Starts a detached thread running `body`; false when none could be created.
private func spawnDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { context in
        Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        return false
    }
    pthread_detach(thread)
    return true
}
