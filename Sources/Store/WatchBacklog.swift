import Synchronization

/// Bytes of watch events a server has queued for one client and not yet written, and a wait for
/// them to drain: how the orchestrator's event stream and the etcd Watch service notice a client
/// that reads slower than the cluster changes. They then let go of the store watch (so nothing
/// more is held for that client), wait until it has read part of its backlog, and watch again
/// from the first revision not yet queued, as etcd catches up its slow ("unsynced") watchers.
public final class WatchBacklog: Sendable {
    private struct State {
        var bytes = 0
        var waiters: [UInt64: (below: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
        /// Waits cancelled before they were registered.
        var cancelled: Set<UInt64> = []
        var nextToken: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Counts `count` more queued bytes; returns the new total.
    public func queue(_ count: Int) -> Int {
        state.withLock { s in
            s.bytes += count
            return s.bytes
        }
    }

    /// Counts `count` queued bytes as written; wakes the waits this brings below their mark.
    public func written(_ count: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.bytes -= count
            let done = s.waiters.filter { s.bytes < $0.value.below }
            for token in done.keys { s.waiters[token] = nil }
            return done.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    /// Returns once fewer than `limit` bytes are queued, or at once when the task is cancelled
    /// (its stream is ending). Any number of tasks may wait.
    public func drained(below limit: Int) async {
        let token = state.withLock { s in
            s.nextToken += 1
            return s.nextToken
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { s -> Bool in
                    if s.cancelled.remove(token) != nil || s.bytes < limit { return true }
                    s.waiters[token] = (limit, continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if let waiter = s.waiters.removeValue(forKey: token) { return waiter.continuation }
                s.cancelled.insert(token)  // not registered yet, or already woken
                return nil
            }
            waiter?.resume()
        }
        // The handler cannot run any more: forget a cancellation that came after the wake-up.
        state.withLock { _ = $0.cancelled.remove(token) }
    }

    /// Bytes queued and not yet written (tests, diagnostics).
    public var queuedBytes: Int { state.withLock { $0.bytes } }
}
