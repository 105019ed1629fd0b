import ClusterModel
import Foundation
import Store

/// Failures of the cluster state layer.
public enum RepositoryError: Error, Sendable, Hashable {
    case notFound(String)
    case alreadyExists(String)
    /// A record changed since it was read: re-read and retry (optimistic concurrency).
    case conflict(String)
    case corrupt(String)
    /// A write would move a task between states that `TaskState.canMove` forbids: a bug or a
    /// writer working from a record it did not read from the store.
    case invalidTransition(String)
    /// The caller may not do this (a worker joining as a node whose credential it lacks).
    case permissionDenied(String)
    /// An `Idempotency-Key` came back with a different request than the one it created a task for.
    case idempotencyKeyReused(String)
}

/// The orchestrator's records in a `ClusterStore`, with compare-and-swap on every update so that
/// concurrent writers (two leaders around an election, an API call racing the scheduler) can never
/// both win. Works unchanged on the built-in store and on etcd.
public struct ClusterRepository: Sendable {
    public let store: any ClusterStore
    public static let taskPrefix = Array("/orchestrator/tasks/".utf8)
    public static let nodePrefix = Array("/orchestrator/nodes/".utf8)

    public init(store: any ClusterStore) {
        self.store = store
    }

    static func taskKey(_ id: String) -> [UInt8] { taskPrefix + Array(id.utf8) }
    static func nodeKey(_ id: String) -> [UInt8] { nodePrefix + Array(id.utf8) }

    /// Refuses a task write whose transition the state machine forbids (same-state writes, which
    /// change a reason or a count, are allowed).
    static func checkTransition(_ updated: TaskRecord) throws {
        guard let from = updated.storedState else {
            throw RepositoryError.invalidTransition("task \(updated.id) was not read from the store")
        }
        guard from == updated.state || from.canMove(to: updated.state) else {
            throw RepositoryError.invalidTransition("task \(updated.id) cannot move from \(from.rawValue) to \(updated.state.rawValue)")
        }
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try! encoder.encode(value))
    }

    /// The same JSON, written by hand (`Records+JSON.swift`): these records are written on every
    /// change of a task or node.
    static func encode<T: Encodable & HandWrittenJSON>(_ value: T) -> [UInt8] {
        value.jsonBytes
    }

    /// Read by hand (`Records+JSON.swift`), since every master reads every change of a task or node;
    /// `JSONDecoder` reads whatever the hand-written reader does not expect, and names what is
    /// wrong with a record that is corrupt.
    static func decode<T: StoredRecord & HandWrittenJSON>(_ type: T.Type, _ kv: KeyValue) throws -> T {
        guard var record = try? T(jsonBytes: kv.value) else {
            return try decodeWithFoundation(type, kv)
        }
        record.markStored(revision: kv.modRevision)
        return record
    }

    /// Decodes a stored record and stamps it with the revision it was read at.
    static func decode<T: StoredRecord>(_ type: T.Type, _ kv: KeyValue) throws -> T {
        try decodeWithFoundation(type, kv)
    }

    private static func decodeWithFoundation<T: StoredRecord>(_ type: T.Type, _ kv: KeyValue) throws -> T {
        do {
            var record = try JSONDecoder().decode(type, from: Data(kv.value))
            record.markStored(revision: kv.modRevision)
            return record
        } catch {
            throw RepositoryError.corrupt("\(String(decoding: kv.key, as: UTF8.self)): \(error)")
        }
    }

    // MARK: - Tasks

    /// Stores a new task; fails if the id is taken.
    @discardableResult
    public func create(_ task: TaskRecord) async throws -> TaskRecord {
        let key = Self.taskKey(task.id)
        let r = try await store.txn(TxnRequest(
            compares: [Compare(key: key, .equal, .createRevision(0))],
            success: [.put(PutRequest(key: key, value: Self.encode(task)))]))
        guard r.succeeded else { throw RepositoryError.alreadyExists(task.id) }
        var stored = task
        stored.markStored(revision: r.revision)
        return stored
    }

    /// A task; `RepositoryError.notFound` if unknown. (``readTask(_:consistency:)`` also gives the
    /// revision the read reflects, and nil for an unknown id.)
    public func task(_ id: String, consistency: ReadConsistency = .serializable) async throws -> TaskRecord {
        guard let task = try await readTask(id, consistency: consistency).task else { throw RepositoryError.notFound(id) }
        return task
    }

    /// All tasks and the revision they were read at.
    public func tasks(consistency: ReadConsistency = .serializable) async throws -> (tasks: [TaskRecord], revision: Int64) {
        let r = try await store.list(prefix: Self.taskPrefix, consistency: consistency)
        return (try r.kvs.map { try Self.decode(TaskRecord.self, $0) }, r.revision)
    }

    /// Replaces a task if it is unchanged since `task.revision` was read.
    @discardableResult
    public func update(_ task: TaskRecord) async throws -> TaskRecord {
        try Self.checkTransition(task)
        let key = Self.taskKey(task.id)
        let r = try await store.txn(TxnRequest(
            compares: [Compare(key: key, .equal, .modRevision(task.revision))],
            success: [.put(PutRequest(key: key, value: Self.encode(task)))]))
        guard r.succeeded else { throw RepositoryError.conflict("task \(task.id) changed since revision \(task.revision)") }
        var stored = task
        stored.markStored(revision: r.revision)
        return stored
    }

    /// Replaces several tasks in one transaction, each only if unchanged since its `revision` was
    /// read. Returns them as stored, or nil (and nothing written) when any of them changed.
    public func updateBatch(_ tasks: [TaskRecord]) async throws -> [TaskRecord]? {
        guard !tasks.isEmpty else { return [] }
        for task in tasks { try Self.checkTransition(task) }
        let r = try await store.txn(TxnRequest(
            compares: tasks.map { Compare(key: Self.taskKey($0.id), .equal, .modRevision($0.revision)) },
            success: tasks.map { .put(PutRequest(key: Self.taskKey($0.id), value: Self.encode($0))) }))
        guard r.succeeded else { return nil }
        return tasks.map { task in
            var stored = task
            stored.markStored(revision: r.revision)
            return stored
        }
    }

    /// Deletes tasks in one transaction, each only if unchanged since its `revision` was read.
    /// Returns false (and deletes nothing) when any of them changed.
    public func deleteBatch(_ tasks: [TaskRecord]) async throws -> Bool {
        guard !tasks.isEmpty else { return true }
        let r = try await store.txn(TxnRequest(
            compares: tasks.map { Compare(key: Self.taskKey($0.id), .equal, .modRevision($0.revision)) },
            success: tasks.map { .deleteRange(DeleteRangeRequest(key: Self.taskKey($0.id))) }))
        return r.succeeded
    }

    // MARK: - Nodes

    public func nodes(consistency: ReadConsistency = .serializable) async throws -> [NodeRecord] {
        let r = try await store.list(prefix: Self.nodePrefix, consistency: consistency)
        return try r.kvs.map { try Self.decode(NodeRecord.self, $0) }
    }

    /// A node; `RepositoryError.notFound` if unknown (``readNode(_:consistency:)`` also gives the
    /// revision).
    public func node(_ id: String, consistency: ReadConsistency = .serializable) async throws -> NodeRecord {
        guard let node = try await readNode(id, consistency: consistency).node else { throw RepositoryError.notFound(id) }
        return node
    }

    /// Writes a node; with `expectRevision` only if unchanged since then (0: only if new).
    @discardableResult
    public func save(_ node: NodeRecord, expectRevision: Int64? = nil) async throws -> NodeRecord {
        let key = Self.nodeKey(node.info.id)
        var compares: [Compare] = []
        if let expected = expectRevision {
            compares.append(expected == 0 ? Compare(key: key, .equal, .createRevision(0)) : Compare(key: key, .equal, .modRevision(expected)))
        }
        let r = try await store.txn(TxnRequest(compares: compares, success: [.put(PutRequest(key: key, value: Self.encode(node)))]))
        guard r.succeeded else { throw RepositoryError.conflict("node \(node.info.id) changed since revision \(expectRevision ?? 0)") }
        var stored = node
        stored.revision = r.revision
        return stored
    }

    // MARK: - Placement

    /// Commits a placement atomically: the task becomes assigned (epoch + 1) and the node's
    /// allocation grows, only if neither changed since they were read. This is what keeps a node
    /// from ever being over-committed, even when two schedulers overlap around a leader change.
    @discardableResult
    public func assign(_ task: TaskRecord, to node: NodeRecord, placement: PlacementRecord, now: Int64) async throws -> (TaskRecord, NodeRecord) {
        var t = task
        t.state = .assigned
        t.node = node.info.id
        t.epoch += 1
        t.reason = ""
        t.placement = placement
        t.updatedAt = now
        try Self.checkTransition(t)
        var n = node
        n.info.allocated = n.info.allocated + task.spec.resources
        n.info.taskCount += 1
        guard n.info.allocated.fits(in: n.info.capacity) else {
            throw RepositoryError.conflict("node \(node.info.id) has no room for task \(task.id)")
        }
        let taskKey = Self.taskKey(task.id), nodeKey = Self.nodeKey(node.info.id)
        let r = try await store.txn(TxnRequest(
            compares: [Compare(key: taskKey, .equal, .modRevision(task.revision)),
                       Compare(key: nodeKey, .equal, .modRevision(node.revision))],
            success: [.put(PutRequest(key: taskKey, value: Self.encode(t))),
                      .put(PutRequest(key: nodeKey, value: Self.encode(n)))]))
        guard r.succeeded else { throw RepositoryError.conflict("task \(task.id) or node \(node.info.id) changed") }
        t.markStored(revision: r.revision)
        n.revision = r.revision
        return (t, n)
    }

    /// What a committed batch of placements wrote, each record stamped with the commit's revision.
    public struct AssignedBatch: Sendable {
        public var revision: Int64
        public var tasks: [TaskRecord]
        public var nodes: [NodeRecord]
    }

    /// Commits several placements in one transaction, guarded by the revision of every task and
    /// node it writes (as read into `nodes`). Returns what was written, or nil when any of them
    /// changed (nothing is written then) or a node would be over-committed.
    public func assignBatch(_ placements: [(task: TaskRecord, placement: PlacementRecord)], nodes: [NodeRecord], now: Int64) async throws -> AssignedBatch? {
        try await assignBatch(placements, nodes: Dictionary(nodes.map { ($0.info.id, $0) }, uniquingKeysWith: { a, _ in a }), now: now)
    }

    /// ``assignBatch(_:nodes:now:)`` with the nodes by id (a scheduling pass keeps them so, rather
    /// than indexing every node again for every batch).
    public func assignBatch(_ placements: [(task: TaskRecord, placement: PlacementRecord)], nodes byID: [String: NodeRecord], now: Int64) async throws -> AssignedBatch? {
        var touched: [String: NodeRecord] = [:]
        var compares: [Compare] = []
        var puts: [RequestOp] = []
        var written: [TaskRecord] = []
        written.reserveCapacity(placements.count)
        for (task, placement) in placements {
            guard var n = touched[placement.node] ?? byID[placement.node] else { return nil }
            var t = task
            t.state = .assigned
            t.node = placement.node
            t.epoch += 1
            t.reason = ""
            t.placement = placement
            t.updatedAt = now
            try Self.checkTransition(t)
            n.info.allocated = n.info.allocated + task.spec.resources
            n.info.taskCount += 1
            guard n.info.allocated.fits(in: n.info.capacity) else { return nil }
            touched[placement.node] = n
            let key = Self.taskKey(task.id)
            compares.append(Compare(key: key, .equal, .modRevision(task.revision)))
            puts.append(.put(PutRequest(key: key, value: Self.encode(t))))
            written.append(t)
        }
        for (id, n) in touched.sorted(by: { $0.key < $1.key }) {
            let key = Self.nodeKey(id)
            compares.append(Compare(key: key, .equal, .modRevision(byID[id]!.revision)))
            puts.append(.put(PutRequest(key: key, value: Self.encode(n))))
        }
        let r = try await store.txn(TxnRequest(compares: compares, success: puts))
        guard r.succeeded else { return nil }
        for i in written.indices { written[i].markStored(revision: r.revision) }
        let nodes = touched.values.map { node -> NodeRecord in
            var n = node
            n.revision = r.revision
            return n
        }
        return AssignedBatch(revision: r.revision, tasks: written, nodes: nodes)
    }

    /// Takes a task off its node atomically: writes `updated` (its new state) and gives the task's
    /// resources back to the node, only if neither changed since read. The task is off its node,
    /// so whatever move was under way (`TaskRecord.moving`) is over.
    @discardableResult
    public func release(_ task: TaskRecord, as released: TaskRecord, from node: NodeRecord) async throws -> (TaskRecord, NodeRecord) {
        var updated = released
        updated.moving = nil
        var checked = updated
        checked.storedState = task.storedState
        try Self.checkTransition(checked)
        var n = node
        n.info.allocated = n.info.allocated - task.spec.resources
        n.info.taskCount -= 1
        guard n.info.allocated.cpu >= 0, n.info.allocated.memory >= 0, n.info.taskCount >= 0 else {
            throw RepositoryError.corrupt("node \(node.info.id) would have negative allocation")
        }
        let taskKey = Self.taskKey(task.id), nodeKey = Self.nodeKey(node.info.id)
        let r = try await store.txn(TxnRequest(
            compares: [Compare(key: taskKey, .equal, .modRevision(task.revision)),
                       Compare(key: nodeKey, .equal, .modRevision(node.revision))],
            success: [.put(PutRequest(key: taskKey, value: Self.encode(updated))),
                      .put(PutRequest(key: nodeKey, value: Self.encode(n)))]))
        guard r.succeeded else { throw RepositoryError.conflict("task \(task.id) or node \(node.info.id) changed") }
        var t = updated
        t.markStored(revision: r.revision)
        n.revision = r.revision
        return (t, n)
    }
}
