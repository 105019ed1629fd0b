import Store

/// One node's assignments as a ``ClusterCache`` holds them: the tasks assigned to it or running
/// on it, sorted by id, and the store revision the cache was at.
public struct NodeAssignments: Sendable, Hashable {
    public var tasks: [TaskRecord]
    public var revision: Int64

    public init(tasks: [TaskRecord], revision: Int64) {
        self.tasks = tasks
        self.revision = revision
    }
}

/// What every master serves from its cache instead of scanning every task: `/metrics`' counts and
/// the workers' assignment streams.
extension ClusterCache {
    /// Tasks and nodes counted by state, as maintained with every change; nil until the cache is
    /// synced (the caller then counts from the store).
    public func counts() -> ClusterCounts? {
        state.withLock { s in s.synced ? s.index.counts(revision: s.revision) : nil }
    }

    /// The node's current assignments; nil until the cache is synced.
    public func assignments(of nodeID: String) -> NodeAssignments? {
        state.withLock { s in s.synced ? Self.assignments(of: nodeID, in: s) : nil }
    }

    /// The node's assignments now, then again each time they may have changed, as whole sets:
    /// the assignment stream's "a read at some revision, then the changes after it".
    ///
    /// Waits up to `timeout` for the cache to be synced and at least at `revision` (a revision the
    /// caller read linearizably, so the first set is no older than what the store held then);
    /// nil when it did not get there (not yet filled, or its watch is failing): the caller reads
    /// the store instead.
    ///
    /// Sets are sent in the order the cache applied the changes, and the stream buffers only the
    /// newest: a consumer that falls behind skips sets that were already outdated, never the
    /// latest one. When the cache lists the store again (its watch failed, e.g. compacted), every
    /// stream is sent its node's set as listed. The stream ends when the cache stops following.
    public func assignmentUpdates(of nodeID: String, atLeast revision: Int64,
                                  timeout: Duration = .seconds(5)) async -> AsyncStream<NodeAssignments>? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let stream = subscribe(nodeID, atLeast: revision) { return stream }
            guard ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    private func subscribe(_ nodeID: String, atLeast revision: Int64) -> AsyncStream<NodeAssignments>? {
        state.withLock { s in
            guard s.synced, s.revision >= revision else { return nil }
            let (stream, continuation) = AsyncStream.makeStream(of: NodeAssignments.self, bufferingPolicy: .bufferingNewest(1))
            let id = s.nextSubscriber
            s.nextSubscriber += 1
            continuation.yield(Self.assignments(of: nodeID, in: s))
            // Removed in a task of its own: the stream may end while this lock is held (the cache
            // finishing every stream as it stops), and the lock is not reentrant.
            continuation.onTermination = { [weak self] _ in
                Task { self?.unsubscribe(nodeID, id) }
            }
            s.subscribers[nodeID, default: [:]][id] = continuation
            return stream
        }
    }

    private func unsubscribe(_ nodeID: String, _ id: UInt64) {
        state.withLock { s in
            s.subscribers[nodeID]?[id] = nil
            if s.subscribers[nodeID]?.isEmpty == true { s.subscribers[nodeID] = nil }
        }
    }

    /// Open assignment streams (for tests and metrics).
    public var assignmentSubscribers: Int {
        state.withLock { s in s.subscribers.values.reduce(0) { $0 + $1.count } }
    }

    static func assignments(of nodeID: String, in s: State) -> NodeAssignments {
        let tasks = (s.index.tasksByNode[nodeID] ?? []).compactMap { s.tasks[$0] }
            .filter { $0.state == .assigned || $0.state == .running }
            .sorted { $0.id < $1.id }
        return NodeAssignments(tasks: tasks, revision: s.revision)
    }

    /// Sends each touched node's set to its streams and forgets the touched nodes. Called under
    /// the lock, after a batch of changes is applied, so sets go out in the order of the changes.
    static func notifyTouched(_ s: inout State) {
        defer { s.touched.removeAll(keepingCapacity: true) }
        guard !s.subscribers.isEmpty else { return }
        for node in s.touched {
            guard let streams = s.subscribers[node], !streams.isEmpty else { continue }
            let set = assignments(of: node, in: s)
            for continuation in streams.values { continuation.yield(set) }
        }
    }
}
