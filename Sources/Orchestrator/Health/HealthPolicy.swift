import ClusterModel

/// When a silent worker stops counting as healthy. Times in milliseconds of the master's clock.
public struct HealthPolicy: Sendable, Hashable {
    /// No heartbeat for this long: not ready (no new tasks; running ones are left alone).
    public var notReadyAfter: Int64 = 5_000
    /// No heartbeat for this long: down (its tasks are lost and rescheduled).
    public var downAfter: Int64 = 15_000
    /// After a leader change, heartbeats that went to the old leader were never seen here: give
    /// every node this long before judging it, instead of declaring the whole cluster dead.
    public var leaderGrace: Int64 = 15_000

    public init() {}

    /// The state a node should be in at `now`, given when it last heartbeat and when this master
    /// became leader. Draining is an operator's choice and survives until the node goes down.
    public func state(of node: NodeRecord, now: Int64, leaderSince: Int64) -> NodeState {
        let lastSeen = max(node.lastHeartbeat, leaderSince + leaderGrace - downAfter)
        let silence = now - lastSeen
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
