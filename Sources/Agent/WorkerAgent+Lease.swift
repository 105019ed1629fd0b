import Foundation
import Logging

/// Fencing by lease: the pure rule is `LeaseFence`'s and the supervisor's; this shell feeds them
/// the monotonic clock and the send times of acknowledged heartbeats, and carries out the stops.
extension WorkerAgent {
    /// The rule with the lease in force now: the masters' (the last one told on join), capped by
    /// `--lease-ms`.
    var leaseFence: LeaseFence {
        LeaseFence(lease: LeaseFence.effectiveLease(told: toldLease, configured: config.lease), stopGrace: config.stopGrace)
    }

    /// Watches the lease until cancelled: sleeps until the fence would begin, then checks again
    /// (acknowledged heartbeats have usually moved it on); once it must begin, stops every task.
    /// The sleep is capped at `leaseRecheck`: the lease in force can shrink meanwhile (the first
    /// join tells the masters' lease, shorter than the fallback the worker starts with), and a
    /// sleep planned with the longer one would let the task outlive the real lease.
    func watchLease() async throws {
        while !Task.isCancelled {
            switch leaseFence.decide(now: .now, lastAcknowledgedSend: lastAcknowledgedSend) {
            case .keep(let until):
                try await Task.sleep(until: min(until, .now + Self.leaseRecheck), clock: .continuous)
            case .stop(let grace):
                if !supervisor.fenced {
                    let silent = lastAcknowledgedSend.duration(to: .now)
                    let actions = supervisor.fence()
                    logger.error("no master has acknowledged a heartbeat for \(silent) (lease \(leaseFence.lease)): stopping every task before the masters start them elsewhere",
                                 metadata: ["tasks": "\(actions.count)", "grace": "\(grace)"])
                    perform(actions)
                }
                // Lifted by a join (`acknowledged(sentAt:rejoined:)`); until then, only poll.
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// The longest the lease watcher sleeps before deciding again.
    static let leaseRecheck: Duration = .milliseconds(100)

    /// How long a fenced copy may take to stop: what is left of the lease, at most the normal
    /// grace, none once the lease has run out; in whole seconds, rounded down, because Docker
    /// counts a stop's grace in whole seconds and rounds up, which would put SIGKILL past the end.
    var fenceGrace: Duration {
        let grace: Duration = switch leaseFence.decide(now: .now, lastAcknowledgedSend: lastAcknowledgedSend) {
        case .stop(let grace): grace
        case .keep: leaseFence.grace
        }
        return .seconds(grace.components.seconds)
    }

    /// A master acknowledged a heartbeat (or a join, which records one) that this worker sent at
    /// `sent`. Returns whether the session must start over: a fenced worker lifts its fence only
    /// on a join, so that the assignment set it then follows is read after its return, never one
    /// a stream had queued before the fence.
    func acknowledged(sentAt sent: ContinuousClock.Instant, rejoined: Bool) -> Bool {
        lastAcknowledgedSend = max(lastAcknowledgedSend, sent)
        guard supervisor.fenced else { return false }
        guard case .keep = leaseFence.decide(now: .now, lastAcknowledgedSend: lastAcknowledgedSend) else { return false }
        guard rejoined else { return true }
        supervisor.unfenced()
        logger.notice("a master answers again: taking assignments again (the stopped tasks are reported as \"\(Supervisor.fencedReason)\")")
        return false
    }

    /// The lease a master gave on join; zero (an older master) keeps the one in force.
    func told(leaseMs: Int64, heartbeatInterval: Duration) {
        guard leaseMs > 0 else { return }
        let lease = Duration.milliseconds(leaseMs)
        if toldLease != lease {
            toldLease = lease
            let effective = leaseFence.lease
            logger.notice("worker lease", metadata: ["masters": "\(lease)", "in force": "\(effective)", "grace": "\(leaseFence.grace)"])
            // A lease hardly longer than the heartbeat interval fences a healthy worker between
            // two heartbeats.
            if effective < heartbeatInterval * 3 {
                logger.warning("the worker lease (\(effective)) is shorter than three heartbeat intervals (\(heartbeatInterval)): tasks will be stopped whenever a heartbeat is a little late; raise --lease-ms or the masters' --node-down-after")
            }
        }
    }
}
