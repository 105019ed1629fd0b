import Store

/// The record the leader writes at `ClusterRepository.leaderKey` when it takes office:
/// `{"id":"m1","term":5}`. The event stream turns its changes into `leader_elected`.
public struct LeaderRecord: Sendable, Hashable, Codable {
    public var id: String
    public var term: UInt64

    public init(id: String, term: UInt64) {
        self.id = id
        self.term = term
    }
}

/// One page of a task listing.
public struct TaskPage: Sendable, Hashable {
    public var tasks: [TaskRecord]
    /// The store revision the whole listing reflects (every page of one listing reads at it).
    public var revision: Int64
    /// The id after which the next page starts, when the range was not exhausted. The next page may
    /// turn out empty when no further task matches the filter (as with Kubernetes' continue tokens).
    public var lastID: String?
}

/// Reads and writes the REST API needs beyond the scheduler's: the revision a read reflects,
/// paged listings at a fixed revision, and the operator's writes (cancel, drain, cordon), each a
/// compare-and-swap retried on conflict, since heartbeats and the scheduler write the same records.
extension ClusterRepository {
    /// Key of the leader record (`LeaderRecord` as JSON), written by the master that becomes leader.
    public static let leaderKey = Array("/orchestrator/leader".utf8)
    /// Everything the orchestrator keeps lives under this prefix (the event stream watches it).
    public static let rootPrefix = Array("/orchestrator/".utf8)

    /// A task (nil if unknown) and the store revision the read reflects.
    public func readTask(_ id: String, consistency: ReadConsistency = .serializable) async throws -> (task: TaskRecord?, revision: Int64) {
        let r = try await store.range(RangeRequest(key: Self.taskKey(id)), consistency: consistency)
        return (try r.kvs.first.map { try Self.decode(TaskRecord.self, $0) }, r.revision)
    }

    /// A node (nil if unknown) and the store revision the read reflects.
    public func readNode(_ id: String, consistency: ReadConsistency = .serializable) async throws -> (node: NodeRecord?, revision: Int64) {
        let r = try await store.range(RangeRequest(key: Self.nodeKey(id)), consistency: consistency)
        return (try r.kvs.first.map { try Self.decode(NodeRecord.self, $0) }, r.revision)
    }

    /// All nodes, sorted by id, and the revision they were read at.
    public func readNodes(consistency: ReadConsistency = .serializable) async throws -> (nodes: [NodeRecord], revision: Int64) {
        let r = try await store.list(prefix: Self.nodePrefix, consistency: consistency)
        return (try r.kvs.map { try Self.decode(NodeRecord.self, $0) }, r.revision)
    }

    /// Tasks in id order (submission order for generated ids) that `matching` accepts, starting after
    /// `after`, at most `limit` (nil: all), read at `revision` (0: the current one). Reading every page
    /// at the first page's revision makes a paged listing one consistent snapshot; a revision since
    /// compacted fails with `StoreError.compacted`.
    public func taskPage(after: String? = nil, limit: Int? = nil, revision: Int64 = 0,
                         consistency: ReadConsistency = .serializable,
                         matching: (TaskRecord) -> Bool = { _ in true }) async throws -> TaskPage {
        let end = KeyRange.prefixEnd(Self.taskPrefix)
        var start = after.map { Self.taskKey($0) + [0] } ?? Self.taskPrefix
        var atRevision = revision
        var out: [TaskRecord] = []
        // Filtered pages read in batches, so a selective filter over many tasks costs a few reads
        // rather than one per task, and an unselective one reads little more than it returns.
        let batch = limit.map { Int64(min(max($0 * 2, 64), 4096)) } ?? 0
        while true {
            let r = try await store.range(RangeRequest(key: start, rangeEnd: end, revision: atRevision, limit: batch, countTotal: false),
                                          consistency: consistency)
            if atRevision == 0 { atRevision = r.revision }
            for kv in r.kvs {
                let task = try Self.decode(TaskRecord.self, kv)
                guard matching(task) else { continue }
                out.append(task)
                if let limit, out.count == limit {
                    let exhausted = !r.more && kv == r.kvs.last
                    return TaskPage(tasks: out, revision: atRevision, lastID: exhausted ? nil : task.id)
                }
            }
            guard r.more, let last = r.kvs.last else {
                return TaskPage(tasks: out, revision: atRevision, lastID: nil)
            }
            start = last.key + [0]
        }
    }

    /// Cancels a task: pending becomes cancelled; assigned or running becomes cancelled and its
    /// node's allocation is released in the same transaction, so the worker sees its assignment
    /// withdrawn and stops the container. `node` is kept on the record (where it ran, for logs).
    /// A task that already ended (completed, failed, cancelled, lost) is returned unchanged with
    /// `changed` false: cancelling is idempotent, as stopping a stopped container is.
    public func cancelTask(_ id: String, reason: String = "cancelled by request", now: Int64,
                           attempts: Int = 16) async throws -> (task: TaskRecord, changed: Bool) {
        var lastConflict = RepositoryError.conflict("task \(id)")
        for _ in 0..<attempts {
            let task = try await task(id, consistency: .linearizable)
            if task.state.isTerminal || task.state == .lost { return (task, false) }
            var updated = task
            updated.state = .cancelled
            updated.reason = reason
            updated.updatedAt = now
            updated.notBefore = nil
            do {
                if (task.state == .assigned || task.state == .running), let nodeID = task.node,
                   let node = try await readNode(nodeID, consistency: .linearizable).node {
                    return (try await release(task, as: updated, from: node).0, true)
                }
                return (try await update(updated), true)
            } catch let error as RepositoryError {
                guard case .conflict = error else { throw error }
                lastConflict = error
            }
        }
        throw lastConflict
    }

    /// Applies `change` to a node with compare-and-swap, re-reading and retrying on conflict
    /// (heartbeats rewrite node records every second). Writes nothing when `change` leaves the
    /// node as it was, so repeating a drain or a cordon is free and fires no event.
    public func updateNode(_ id: String, attempts: Int = 16,
                           _ change: (inout NodeRecord) -> Void) async throws -> (node: NodeRecord, changed: Bool) {
        var lastConflict = RepositoryError.conflict("node \(id)")
        for _ in 0..<attempts {
            let node = try await self.node(id, consistency: .linearizable)
            var updated = node
            change(&updated)
            if updated == node { return (node, false) }
            do {
                return (try await save(updated, expectRevision: node.revision), true)
            } catch let error as RepositoryError {
                guard case .conflict = error else { throw error }
                lastConflict = error
            }
        }
        throw lastConflict
    }
}

extension ClusterRepository {
    /// Why a node cannot be removed yet.
    public enum NodeRemovalRefusal: Error, Sendable, Hashable {
        /// Tasks are assigned to it or run on it: drain it first (or wait until it is down and its
        /// tasks have been rescheduled).
        case busy(tasks: Int)
    }

    /// Deletes a node's record and its heartbeat (a `node_removed` event), only while no task is
    /// placed on it and only if unchanged since read (retried on a race). A worker still running
    /// as that node joins again as a new registration. Returns the record as it was.
    public func removeNode(_ id: String, attempts: Int = 16) async throws -> NodeRecord {
        var lastConflict = RepositoryError.conflict("node \(id)")
        for _ in 0..<attempts {
            let node = try await self.node(id, consistency: .linearizable)
            guard node.info.taskCount == 0, node.info.allocated == .zero else {
                throw NodeRemovalRefusal.busy(tasks: node.info.taskCount)
            }
            let r = try await store.txn(TxnRequest(
                compares: [Compare(key: Self.nodeKey(id), .equal, .modRevision(node.revision))],
                success: [.deleteRange(DeleteRangeRequest(key: Self.nodeKey(id))),
                          .deleteRange(DeleteRangeRequest(key: Self.heartbeatKey(id)))]))
            if r.succeeded { return node }
            lastConflict = .conflict("node \(id) changed while being removed")
        }
        throw lastConflict
    }
}

extension NodeRecord {
    /// Drain: no new tasks, and the reconciler moves the running ones to other nodes. A down node
    /// stays down (its tasks are already lost and rescheduled) but becomes unschedulable.
    public mutating func drain() {
        info.schedulable = false
        if info.state != .down { info.state = .draining }
    }

    /// Cordon: no new tasks; running ones stay.
    public mutating func cordon() {
        info.schedulable = false
    }

    /// Uncordon: schedulable again, and a drained node returns to ready (the health policy demotes
    /// it again if its heartbeats have stopped).
    public mutating func uncordon() {
        info.schedulable = true
        if info.state == .draining { info.state = .ready }
    }
}
