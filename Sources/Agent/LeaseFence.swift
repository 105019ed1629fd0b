/// The worker's fencing rule (Nomad's `stop_after_client_disconnect`, Kubernetes' node lease),
/// as a pure value: given the monotonic time now and the time the worker *sent* the last
/// heartbeat a master acknowledged, keep the tasks running or stop them.
///
/// The masters declare a silent node down after `--node-down-after` and start its tasks
/// elsewhere; they give each worker a lease shorter than that (`JoinResponse.lease_ms`, see
/// `HealthPolicy.workerLease` on the master). By the end of the lease every task of a worker cut
/// off from all masters must be gone, so the fence begins `grace` earlier: SIGTERM then, and the
/// runtime's SIGKILL lands by the end of the lease. Counting from the send time (not the reply's
/// arrival) is what makes the rule safe: the master stamps the heartbeat later than it was sent,
/// so the worker's lease always ends before the master's `--node-down-after` does.
///
/// Times are `ContinuousClock` instants: a step of the wall clock neither fences a healthy worker
/// nor keeps a cut-off one running.
public struct LeaseFence: Sendable, Hashable {
    /// What the shell does now.
    public enum Decision: Sendable, Hashable {
        /// Keep running; decide again at `until` (or at the next acknowledged heartbeat).
        case keep(until: ContinuousClock.Instant)
        /// Stop every task now, giving each `grace` before SIGKILL (the time left in the lease).
        case stop(grace: Duration)
    }

    /// By this long after the last acknowledged heartbeat was sent, no task runs.
    public var lease: Duration
    /// The grace a stop gets normally (`WorkerConfig.stopGrace`): a fence gives less.
    public var stopGrace: Duration

    public init(lease: Duration, stopGrace: Duration) {
        self.lease = lease
        self.stopGrace = stopGrace
    }

    /// How long before the lease ends the fence begins: the normal stop grace, but no more than a
    /// fifth of the lease, so that a short master outage (an election, a slow disk) does not stop
    /// the tasks of a worker that is about to hear from the masters again. With the default
    /// 13 s lease and 10 s stop grace: SIGTERM after 10.4 s of silence, SIGKILL by 13 s.
    public var grace: Duration { min(stopGrace, lease / 5) }

    /// The decision at `now`, given when the last acknowledged heartbeat was sent.
    public func decide(now: ContinuousClock.Instant, lastAcknowledgedSend: ContinuousClock.Instant) -> Decision {
        let end = lastAcknowledgedSend + lease
        let fenceAt = end - grace
        if now < fenceAt { return .keep(until: fenceAt) }
        // Late (the worker was suspended, its timer ran late): whatever is left, maybe nothing,
        // and never more than the normal grace.
        let left = now < end ? now.duration(to: end) : .zero
        return .stop(grace: min(left, stopGrace))
    }

    /// The lease a worker uses: the masters' (`told`, nil before any master gave one) capped by
    /// the operator's `--lease-ms` (`configured`). A worker that has not heard a lease from any
    /// master since it started uses `fallback`, the lease for the default `--node-down-after`.
    public static func effectiveLease(told: Duration?, configured: Duration?, fallback: Duration = defaultLease) -> Duration {
        let base = told ?? fallback
        guard let configured else { return base }
        return min(base, configured)
    }

    /// The masters' lease for their default `--node-down-after` of 15 s with 1 s heartbeats
    /// (15 s minus two heartbeat intervals), used until a master tells its own.
    public static let defaultLease = Duration.seconds(13)
}
