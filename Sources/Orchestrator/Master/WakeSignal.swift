import Synchronization

/// Wakes one waiting loop as soon as there is work, or lets it sleep until a timeout: the leader's
/// loop reacts to a store change at once instead of on its next poll.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Wakes the waiter, or the next `wait` if none waits now.
    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w.continuation
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the first signal (one that came before the call counts) or after `timeout`.
    func wait(timeout: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id = state.withLock { s -> UInt64? in
                if s.pending {
                    s.pending = false
                    return nil
                }
                s.nextID += 1
                s.waiter = (s.nextID, continuation)
                return s.nextID
            }
            guard let id else {
                continuation.resume()
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                let expired = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                    guard let w = s.waiter, w.id == id else { return nil }
                    s.waiter = nil
                    return w.continuation
                }
                expired?.resume()
            }
        }
    }
}
