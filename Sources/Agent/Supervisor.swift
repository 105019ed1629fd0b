import ClusterModel

/// One assignment as the worker receives it.
public struct AssignedTask: Sendable, Hashable {
    public var taskID: String
    public var epoch: UInt64
    public var spec: TaskSpec
    /// The masters want this copy stopped and its end reported (they move the task elsewhere
    /// once it is confirmed stopped: a drain).
    public var stop: Bool

    public init(taskID: String, epoch: UInt64, spec: TaskSpec, stop: Bool = false) {
        self.taskID = taskID
        self.epoch = epoch
        self.spec = spec
        self.stop = stop
    }

    var runtimeTask: RuntimeTask {
        RuntimeTask(taskID: taskID, epoch: epoch, name: spec.name, image: spec.image, command: spec.command, env: spec.env,
                    cpuMillicores: spec.resources.cpu, memoryMB: spec.resources.memory)
    }
}

/// What the shell must do next.
public enum SupervisorAction: Sendable, Hashable {
    case start(AssignedTask)
    /// Stop the copy of `taskID` running under `epoch` (withdrawn or replaced).
    case stop(taskID: String, epoch: UInt64)
    /// Stop the copy at once, within what is left of the lease (`LeaseFence`): the worker is cut
    /// off from the masters, which will soon start the task elsewhere.
    case fence(taskID: String, epoch: UInt64)
    /// Tell the masters; retried until a master acknowledges it.
    case report(taskID: String, epoch: UInt64, TaskReport)
    /// Delete what is left of a finished copy.
    case remove(taskID: String)
}

/// The worker's decisions, as a pure state machine (the `Ready` pattern): events in, actions out,
/// no clock and no I/O, so every rule is a unit test.
///
/// Rules:
/// - An assignment older than one already seen for the same task is never started (epochs only
///   grow: a stale master or a replayed stream cannot resurrect a replaced copy), and one epoch
///   runs at most once: a copy that ended is not started again when a stream lists it again
///   before its ending was recorded.
/// - A task that disappears from the assignment set is stopped and not reported: the masters
///   withdrew it (cancelled, or its node declared down) and already recorded why.
/// - An assignment marked `stop` (a drain moving the task) stops its copy and reports the end,
///   which is what lets the masters start the task elsewhere; with no copy of that epoch here
///   (never started, or still queued behind an older copy), it is reported cancelled as soon as
///   nothing of the task runs here, so a move never waits on a copy that does not exist.
/// - A newer epoch of a task that still runs here replaces it: stop the old copy, start the new
///   one once the old one has ended, so one task never runs twice on a node.
/// - Every ending of a copy that was still wanted is reported exactly once per copy.
/// - A start that finishes after its copy was stopped is stopped again: the first stop found
///   nothing to stop (the runtime had not created the copy yet).
/// - Fenced (no master acknowledged a heartbeat for longer than the lease, `LeaseFence`): every
///   copy is stopped, each that was wanted is reported as failed with `fencedReason` (unless it
///   ended by itself first), and nothing starts, whatever a stream still says, until `unfenced()`.
///   Assignment sets that arrive while fenced are dropped: the shell takes a fresh set from a new
///   session once a master answers again, so nothing from before the fence is started late.
/// - An epoch whose ending was recorded before a restart of the worker (`recovered`) is never
///   started again.
public struct Supervisor: Sendable {
    enum Phase: Sendable, Hashable {
        case starting, running, stopping
    }

    struct Copy: Sendable, Hashable {
        var epoch: UInt64
        var phase: Phase
        /// Still in the latest assignment set: its ending is reported.
        var wanted: Bool
        /// Stopped by the fence: its ending is reported as `fencedReason`.
        var fenced = false
    }

    /// What a copy stopped by the fence is reported as (a failure: the restart policy decides, as
    /// it does for a task lost with its node).
    public static let fencedReason = "stopped: lost contact with the masters"

    /// The copies that exist on this node (at most one per task).
    private(set) var copies: [String: Copy] = [:]
    /// The highest epoch ever seen per task.
    private(set) var seenEpoch: [String: UInt64] = [:]
    /// Assignments waiting for an older copy of the same task to end.
    private(set) var queued: [String: AssignedTask] = [:]
    /// Cut off from the masters past the lease: nothing starts.
    public private(set) var fenced = false

    public init() {}

    /// Copies that are starting or running: what heartbeats report.
    public var running: [(taskID: String, epoch: UInt64)] {
        copies.filter { $0.value.phase != .stopping }.map { ($0.key, $0.value.epoch) }.sorted { $0.taskID < $1.taskID }
    }

    /// A copy found running after a restart of the worker (adoption by label). It counts as wanted
    /// until the first assignment set says otherwise.
    public mutating func adopted(taskID: String, epoch: UInt64) {
        copies[taskID] = Copy(epoch: epoch, phase: .running, wanted: true)
        seenEpoch[taskID] = max(seenEpoch[taskID] ?? 0, epoch)
    }

    /// A copy that ended before a restart of the worker, whose report was persisted and is still
    /// to be delivered: that epoch never runs again here.
    public mutating func recovered(taskID: String, epoch: UInt64) {
        seenEpoch[taskID] = max(seenEpoch[taskID] ?? 0, epoch)
    }

    /// The complete set of this node's assignments arrived.
    public mutating func assignments(_ set: [AssignedTask]) -> [SupervisorAction] {
        guard !fenced else { return [] }
        var actions: [SupervisorAction] = []
        var wantedIDs: Set<String> = []
        for a in set {
            // Older than one seen: never. The same epoch with no copy here: it already ran and
            // ended (its report may not have reached the masters yet, so a new master's stream
            // still lists it): never twice.
            // (A queued epoch with no copy has not run: its predecessor ended while fenced.)
            if let seen = seenEpoch[a.taskID],
               a.epoch < seen || (a.epoch == seen && copies[a.taskID] == nil && queued[a.taskID]?.epoch != a.epoch) { continue }
            wantedIDs.insert(a.taskID)
            if a.stop {
                actions += stopToMove(a)
                continue
            }
            seenEpoch[a.taskID] = a.epoch
            if var copy = copies[a.taskID] {
                if copy.epoch == a.epoch {
                    copy.wanted = true
                    copies[a.taskID] = copy
                } else if copy.epoch < a.epoch {
                    queued[a.taskID] = a
                    if copy.phase != .stopping {
                        copy.phase = .stopping
                        copy.wanted = false
                        copies[a.taskID] = copy
                        actions.append(.stop(taskID: a.taskID, epoch: copy.epoch))
                    }
                }
            } else {
                queued[a.taskID] = nil
                copies[a.taskID] = Copy(epoch: a.epoch, phase: .starting, wanted: true)
                actions.append(.start(a))
            }
        }
        for (id, var copy) in copies where !wantedIDs.contains(id) && copy.phase != .stopping {
            copy.phase = .stopping
            copy.wanted = false
            copies[id] = copy
            actions.append(.stop(taskID: id, epoch: copy.epoch))
        }
        for id in queued.keys where !wantedIDs.contains(id) { queued[id] = nil }
        return actions.sorted { "\($0)" < "\($1)" }
    }

    /// An assignment marked `stop`: the copy of that epoch is stopped and its end reported.
    private mutating func stopToMove(_ a: AssignedTask) -> [SupervisorAction] {
        seenEpoch[a.taskID] = a.epoch
        if var copy = copies[a.taskID], copy.epoch == a.epoch {
            let stopped = copy.phase == .stopping
            copy.phase = .stopping
            copy.wanted = true
            copies[a.taskID] = copy
            return stopped ? [] : [.stop(taskID: a.taskID, epoch: a.epoch)]
        }
        if var copy = copies[a.taskID] {
            // An older copy is still on its way out: this epoch never ran, and is confirmed
            // stopped once that copy has ended (`ended`).
            queued[a.taskID] = a
            guard copy.phase != .stopping else { return [] }
            copy.phase = .stopping
            copy.wanted = false
            copies[a.taskID] = copy
            return [.stop(taskID: a.taskID, epoch: copy.epoch)]
        }
        // No copy here, and the epoch is new or was only queued (`assignments` skips an epoch that
        // ran and ended: its report is on its way): it never ran, say so now.
        queued[a.taskID] = nil
        return [.report(taskID: a.taskID, epoch: a.epoch, .cancelled(reason: "stopped before it started"))]
    }

    /// The runtime has the copy running.
    public mutating func started(taskID: String, epoch: UInt64) -> [SupervisorAction] {
        guard var copy = copies[taskID], copy.epoch == epoch else { return [] }
        if copy.phase == .stopping {
            // Stopped while the runtime was still creating it: that stop found nothing.
            return [copy.fenced ? .fence(taskID: taskID, epoch: epoch) : .stop(taskID: taskID, epoch: epoch)]
        }
        guard copy.phase == .starting else { return [] }
        copy.phase = .running
        copies[taskID] = copy
        return copy.wanted ? [.report(taskID: taskID, epoch: epoch, .running)] : []
    }

    /// The copy ended (exited, failed to start, or stopped by us).
    public mutating func ended(taskID: String, epoch: UInt64, outcome: TaskOutcome) -> [SupervisorAction] {
        guard let copy = copies[taskID], copy.epoch == epoch else { return [] }
        copies[taskID] = nil
        var actions: [SupervisorAction] = [.remove(taskID: taskID)]
        if copy.wanted {
            // `.cancelled` is the runtime's word for "ended by a stop": here, the fence's.
            let report: TaskReport = copy.fenced && outcome == .cancelled ? .failed(exitCode: nil, reason: Self.fencedReason) : Self.report(for: outcome)
            actions.append(.report(taskID: taskID, epoch: epoch, report))
        }
        if let next = queued[taskID], next.stop {
            // Asked to move before it ever started: nothing of the task runs here any more.
            queued[taskID] = nil
            actions.append(.report(taskID: taskID, epoch: next.epoch, .cancelled(reason: "stopped before it started")))
        } else if !fenced, let next = queued.removeValue(forKey: taskID) {
            copies[taskID] = Copy(epoch: next.epoch, phase: .starting, wanted: true)
            actions.append(.start(next))
        }
        return actions
    }

    /// A master answered that a reported copy is no longer the task's current assignment.
    public mutating func withdrawn(taskID: String, epoch: UInt64) -> [SupervisorAction] {
        guard var copy = copies[taskID], copy.epoch == epoch, copy.phase != .stopping else { return [] }
        copy.phase = .stopping
        copy.wanted = false
        copies[taskID] = copy
        return [.stop(taskID: taskID, epoch: epoch)]
    }

    /// The lease ran out: stop every copy (the ones already stopping too, since their stop may
    /// take the full grace) and start nothing until `unfenced()`. What waits to start stays
    /// queued: the first set after the fence starts it if the masters still want it here.
    public mutating func fence() -> [SupervisorAction] {
        guard !fenced else { return [] }
        fenced = true
        var actions: [SupervisorAction] = []
        for (id, var copy) in copies {
            copy.fenced = true
            copy.phase = .stopping
            copies[id] = copy
            actions.append(.fence(taskID: id, epoch: copy.epoch))
        }
        return actions.sorted { "\($0)" < "\($1)" }
    }

    /// A master acknowledged a heartbeat again: assignment sets count from now on. The copies
    /// the fence stopped are still reported as fenced when they end.
    public mutating func unfenced() {
        fenced = false
    }

    static func report(for outcome: TaskOutcome) -> TaskReport {
        switch outcome {
        case .exited(let code) where code == 0: .completed
        case .exited(let code): .failed(exitCode: Int(code), reason: "exit code \(code)")
        case .oomKilled(let code): .failed(exitCode: Int(code), reason: "OOM killed (exceeded its memory limit)")
        case .cancelled: .cancelled(reason: "stopped on the worker")
        case .failed(let reason, let message): .failed(exitCode: nil, reason: "\(Self.describe(reason)): \(message)")
        }
    }

    static func describe(_ reason: FailureReason) -> String {
        switch reason {
        case .imageNotFound: "image not found"
        case .invalidSpec: "invalid task"
        case .runtimeError: "runtime error"
        }
    }
}
