import ClusterModel

/// When a silent worker stops counting as healthy. Silences are milliseconds of the leader's
/// monotonic clock (`HeartbeatObservations`), so no master's wall clock decides node health.
public struct HealthPolicy: Sendable, Hashable {
    /// No heartbeat for this long: not ready (no new tasks; running ones are left alone).
    public var notReadyAfter: Int64 = 5_000
    /// No heartbeat for this long: down (its tasks are lost and rescheduled).
    public var downAfter: Int64 = 15_000

    public init() {}

    /// How often workers heartbeat, in milliseconds: every second, or a tenth of `downAfter` when
    /// that is shorter (short timings in tests), so that `workerLease` always spans at least eight
    /// heartbeats and a healthy worker never outlives its lease between two of them.
    public var heartbeatInterval: Int64 { min(1_000, max(100, downAfter / 10)) }

    /// The lease the masters give a worker that heartbeats every `heartbeatInterval` ms: by this
    /// long after it *sent* its last acknowledged heartbeat, the worker has stopped all its tasks
    /// (it fences itself), so they never run beside the copies started once its node is down.
    ///
    /// Why `downAfter - 2 × heartbeatInterval` (13 s for the default 15 s): a master acknowledges
    /// a heartbeat only once the store has it, and the leader notices the change at a reconcile
    /// pass after that, timing it on its own monotonic clock (`HeartbeatObservations`); so the
    /// leader's silence starts at or after the worker's send time, and the node is down no earlier
    /// than `downAfter` after the worker sent its last acknowledged heartbeat (later still after a
    /// leader change, which restarts every node's count). A lease of `downAfter` would do with
    /// perfect timers; the two intervals (2 s by default, 600 ms for a 3 s `downAfter`) absorb
    /// the worker's lease timer firing late on a busy machine and the runtime's SIGKILL and reap
    /// (a Docker API call). Wall clocks play no part, so their skew or steps need no margin.
    public func workerLease(heartbeatInterval: Int64) -> Int64 {
        max(0, downAfter - 2 * heartbeatInterval)
    }

    /// The state a node should be in after `silence` ms without a heartbeat the leader saw.
    /// Draining is an operator's choice and survives until the node goes down.
    public func state(of node: NodeRecord, silence: Int64) -> NodeState {
        if silence >= downAfter { return .down }
        if node.info.state == .draining { return .draining }
        if silence >= notReadyAfter { return .notReady }
        return .ready
    }
}

/// What to do with a task that ended or was lost.
public enum RestartDecision: Sendable, Hashable {
    /// Make it pending again once `delay` milliseconds have passed.
    case restart(delay: Int64)
    /// Leave it in its final state; `reason` says why.
    case stop(reason: String)
}

extension RestartPolicy {
    /// Applies the policy to a task that ended in `state` after `retries` restarts. `jitter` is a
    /// number in [0, 1) from the caller's seeded generator: the backoff is doubled per retry, capped,
    /// and spread by up to a quarter so that tasks lost together do not all restart at once.
    public func decide(after state: TaskState, retries: Int, jitter: Double) -> RestartDecision {
        let wanted: Bool
        switch (condition, state) {
        case (.never, _): wanted = false
        case (.onFailure, .failed), (.onFailure, .lost): wanted = true
        case (.onFailure, _): wanted = false
        case (.always, .completed), (.always, .failed), (.always, .lost): wanted = true
        case (.always, _): wanted = false
        }
        guard wanted else { return .stop(reason: "restart policy \(condition.rawValue)") }
        guard retries < maxRetries else { return .stop(reason: "gave up after \(retries) restarts (max_retries \(maxRetries))") }
        let exponent = min(retries, 30)
        let base = min(Int64(backoffMs) << Int64(exponent), Int64(maxBackoffMs))
        let spread = Int64(Double(base) * 0.25 * min(max(jitter, 0), 0.999_999))
        return .restart(delay: base - spread)
    }
}
