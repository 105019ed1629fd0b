import ClusterModel

/// Which ended tasks have been kept long enough to delete (Nomad's job GC, Kubernetes' TTL after
/// finished): a task that ended for good (cancelled, or completed or failed with its restart
/// policy spent) more than `retentionMs` ago by its `updated_at`. Pure: the leader passes the
/// tasks and its wall clock, deletes what comes back (compare-and-swap on each task's revision,
/// so a task that changed meanwhile stays), and the store's watch turns each deletion into a
/// `task_deleted` event.
public struct TaskRetention: Sendable, Hashable {
    /// How long an ended task stays readable (its record, events, and logs through its worker).
    public var retentionMs: Int64
    /// Deletions per transaction: etcd refuses a transaction of more than 128 operations by
    /// default (`--max-txn-ops`), and `--store etcd` must not be refused.
    public var batchLimit: Int
    /// Deletions per pass, oldest first. A pass that reaches it leaves a backlog, and the leader
    /// runs the next pass soon instead of after its usual interval, so deletion keeps pace with
    /// however fast tasks end (a pass of one batch every 10 s deleted 25 tasks/s, while a busy
    /// cluster ends hundreds a second).
    public var passLimit: Int

    public init(retentionMs: Int64 = 86_400_000, batchLimit: Int = 128, passLimit: Int = 2_048) {
        self.retentionMs = retentionMs
        self.batchLimit = max(1, batchLimit)
        self.passLimit = max(1, passLimit)
    }

    /// The tasks to delete now, oldest first, at most `passLimit`.
    public func expired(_ tasks: some Sequence<TaskRecord>, now: Int64) -> [TaskRecord] {
        let cutoff = now - retentionMs
        let ended = tasks.filter { task in
            guard task.updatedAt <= cutoff else { return false }
            return Self.endedForGood(task)
        }
        return Array(ended.sorted { ($0.updatedAt, $0.id) < ($1.updatedAt, $1.id) }.prefix(passLimit))
    }

    /// `expired` in transactions of at most `batchLimit`.
    public func batches(_ expired: [TaskRecord]) -> [ArraySlice<TaskRecord>] {
        stride(from: 0, to: expired.count, by: batchLimit).map { expired[$0..<min($0 + batchLimit, expired.count)] }
    }

    /// Whether nothing will run the task again: cancelled, or an ending its restart policy does not
    /// restart (the reconciler's own rule, with no jitter: only the delay depends on it).
    static func endedForGood(_ task: TaskRecord) -> Bool {
        switch task.state {
        case .cancelled:
            return true
        case .completed, .failed:
            if case .stop = task.spec.restartPolicy.decide(after: task.state, retries: task.retries, jitter: 0) { return true }
            return false
        case .pending, .assigned, .running, .lost:
            return false
        }
    }
}

/// Which down nodes have been gone long enough to remove (Nomad's node GC): down, no task placed on
/// them (the reconciler has already moved their tasks), and silent for more than `afterMs` by their
/// last heartbeat (or, without one, by what their record says). Pure.
public struct NodePurge: Sendable, Hashable {
    public var afterMs: Int64

    public init(afterMs: Int64 = 86_400_000) {
        self.afterMs = afterMs
    }

    public func expired(_ nodes: some Sequence<NodeRecord>, heartbeats: [String: Int64], now: Int64) -> [String] {
        nodes.filter { node in
            node.info.state == .down && node.info.taskCount == 0 && node.info.allocated == .zero
                && now - (heartbeats[node.info.id] ?? node.lastHeartbeat) > afterMs
        }.map(\.info.id).sorted()
    }
}
