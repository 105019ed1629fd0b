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
    /// At most this many deletions per pass, oldest first: one transaction of bounded size.
    public var batchLimit: Int

    public init(retentionMs: Int64 = 86_400_000, batchLimit: Int = 256) {
        self.retentionMs = retentionMs
        self.batchLimit = batchLimit
    }

    /// The tasks to delete now, oldest first.
    public func expired(_ tasks: some Sequence<TaskRecord>, now: Int64) -> [TaskRecord] {
        let cutoff = now - retentionMs
        let ended = tasks.filter { task in
            guard task.updatedAt <= cutoff else { return false }
            return Self.endedForGood(task)
        }
        return Array(ended.sorted { ($0.updatedAt, $0.id) < ($1.updatedAt, $1.id) }.prefix(batchLimit))
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
