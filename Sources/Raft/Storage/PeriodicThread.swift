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
    // The mutex guards `stopped`; the condition wakes the sleeper early on stop.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var stopped = false
    private var thread: pthread_t?
    private let interval: Duration
    private let body: @Sendable () -> Void

    init(interval: Duration, body: @escaping @Sendable () -> Void) {
        self.interval = interval
        self.body = body
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Sleep by the monotonic clock: a wall-clock step must not stall or hurry the rounds.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)

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

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Wakes the thread and waits until it has ended (a round in progress finishes first).
    /// Idempotent; from the thread itself (in `body`) it only asks it to end.
    func stop() {
        pthread_mutex_lock(mutex)
        let thread = stopped ? nil : self.thread
        stopped = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
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
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (seconds, attoseconds) = interval.components
        var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
        var deadline = timespec(tv_sec: now.tv_sec + Int(seconds) + nanoseconds / 1_000_000_000, tv_nsec: 0)
        nanoseconds %= 1_000_000_000
        deadline.tv_nsec = nanoseconds
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !stopped {
            // ETIMEDOUT ends the sleep; 0 is a signal (stop) or a spurious wake-up: check again.
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
        }
        return !stopped
    }
}
