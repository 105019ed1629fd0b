#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `body` every `interval` on a thread of its own until `stop()`.
///
/// For blocking background work (a WAL checkpoint copies pages and syncs the database): on a task
/// it would hold one of the cooperative pool's few threads for the whole sync, delaying the
/// node's ticks and the API's requests, and a busy pool would delay it in turn until the writer
/// had outrun it. A thread is time-sliced by the kernel and keeps its own pace.
final class PeriodicThread: @unchecked Sendable {
    // The lock guards `stopped`; the condition wakes the sleeper early on stop.
    private let condition = MonotonicCondition()
    private var stopped = false
    private var thread: pthread_t?
    private let interval: Duration
    private let body: @Sendable () -> Void

    init(interval: Duration, body: @escaping @Sendable () -> Void) {
        self.interval = interval
        self.body = body

        // The thread holds the object until it ends (stop() joins it), so it can never outlive it.
        let context = Unmanaged.passRetained(self).toOpaque()
        var created = pthread_t()
        let result = pthread_create(&created, nil, { context in
            let periodic = Unmanaged<PeriodicThread>.fromOpaque(context!).takeRetainedValue()
            periodic.runRounds()
            return nil
        }, context)
        if result == 0 {
            thread = created
        } else {
            // No thread (out of resources): no rounds; the caller's work is an optimisation.
            Unmanaged<PeriodicThread>.fromOpaque(context).release()
        }
    }

    /// Wakes the thread and waits until it has ended (a round in progress finishes first).
    /// Idempotent; from the thread itself (in `body`) it only asks it to end.
    func stop() {
        condition.lock()
        let thread = stopped ? nil : self.thread
        stopped = true
        condition.signal()
        condition.unlock()
        guard let thread else { return }
        if pthread_equal(thread, pthread_self()) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    private func runRounds() {
        while sleepUntilNextRound() { body() }
    }

    /// Sleeps one interval; false once stopped.
    private func sleepUntilNextRound() -> Bool {
        let deadline = MonotonicCondition.deadline(after: interval)
        condition.lock()
        defer { condition.unlock() }
        // A signal is a stop or a spurious wake-up: check again.
        while !stopped, condition.wait(until: deadline) {}
        return !stopped
    }
}
