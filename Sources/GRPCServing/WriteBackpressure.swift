import Synchronization

/// Bytes of one streaming call's response messages queued for the connection and not yet taken
/// by the socket, and the writer waiting for them to drop: the backpressure a service's `write`
/// feels from a client that reads slowly. (swift-nio-http2 holds DATA frames while the client's
/// flow-control window is closed, and would hold any number of them.)
final class WriteBackpressure: Sendable {
    /// Above this many queued bytes, a write waits until at most half of them are.
    let limit: Int

    private struct State {
        var bytes = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }

    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Counts `count` more queued bytes; returns the new total.
    func queue(_ count: Int) -> Int {
        state.withLock { s in
            s.bytes += count
            return s.bytes
        }
    }

    /// The socket took `count` bytes (or their write failed): wakes the writer once half are out.
    func written(_ count: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.bytes -= count
            guard s.bytes <= limit / 2, !s.waiters.isEmpty else { return [] }
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in ready { waiter.resume() }
    }

    /// Returns once at most half the limit is queued, the stream is closed, or the task is
    /// cancelled (the next write then finds out how the stream is).
    func drained() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Checked under the lock that `onCancel` takes: a cancellation is either seen
                // here or finds the waiter registered.
                let now = state.withLock { s -> Bool in
                    if s.closed || s.bytes <= limit / 2 || Task.isCancelled { return true }
                    s.waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            wakeAll(closing: false)
        }
    }

    /// The stream ended: nothing will be written any more, so nobody waits.
    func close() {
        wakeAll(closing: true)
    }

    private func wakeAll(closing: Bool) {
        let waiters = state.withLock { s in
            if closing { s.closed = true }
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
