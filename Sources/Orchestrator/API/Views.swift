import ClusterModel
import Foundation

/// JSON encoding shared by the API and the event stream: sorted keys (stable output), no escaped
/// slashes (image names read as typed), one line (an SSE `data:` field must not break).
enum APIJSON {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        if let view = value as? any HandWrittenAPIJSON {
            var writer = JSONByteWriter(capacity: 1024, escapesSlashes: false)
            view.write(to: &writer)
            return writer.bytes
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The views below hold only strings, integers, booleans and finite doubles, which always encode.
        return Array(try! encoder.encode(value))
    }
}

/// A view the API writes by hand (`JSONByteWriter`), in the text `APIJSON`'s encoder would write:
/// tasks, singly and in pages of up to 500, are what clients read most.
protocol HandWrittenAPIJSON {
    func write(to writer: inout JSONByteWriter)
}

/// A task as the API shows it: the stored record (snake_case fields, see `TaskRecord`) plus
/// `revision`, the store revision of this version of it.
public struct TaskView: Encodable, Sendable {
    public var record: TaskRecord

    public init(_ record: TaskRecord) {
        self.record = record
    }

    enum Extra: String, CodingKey { case revision }

    public func encode(to encoder: any Encoder) throws {
        try record.encode(to: encoder)
        var c = encoder.container(keyedBy: Extra.self)
        try c.encode(record.revision, forKey: .revision)
    }
}

extension TaskView: HandWrittenAPIJSON {
    func write(to writer: inout JSONByteWriter) {
        record.write(to: &writer, revision: record.revision)
    }
}

/// A node as the API shows it: flat and snake_case (the stored `NodeRecord` nests `info`).
public struct NodeView: Encodable, Sendable {
    public var id: String
    public var state: NodeState
    public var schedulable: Bool
    public var labels: [String: String]
    public var capacity: Resources
    public var allocated: Resources
    public var free: Resources
    public var taskCount: Int
    public var address: String
    public var lastHeartbeat: Int64
    public var revision: Int64

    /// - Parameter heartbeat: the node's latest heartbeat key, when read: heartbeats are written
    ///   there, not into the node record (which keeps the time of its last join).
    public init(_ node: NodeRecord, heartbeat: Int64? = nil) {
        id = node.info.id
        state = node.info.state
        schedulable = node.info.schedulable
        labels = node.info.labels
        capacity = node.info.capacity
        allocated = node.info.allocated
        free = node.info.free
        taskCount = node.info.taskCount
        address = node.address
        lastHeartbeat = max(node.lastHeartbeat, heartbeat ?? 0)
        revision = node.revision
    }

    enum CodingKeys: String, CodingKey {
        case id, state, schedulable, labels, capacity, allocated, free, address, revision
        case taskCount = "task_count"
        case lastHeartbeat = "last_heartbeat"
    }
}

/// `GET /api/v1/tasks`.
struct TaskListView: Encodable, Sendable {
    var tasks: [TaskView]
    var revision: Int64
    /// Present when more tasks may follow: pass it back as `?continue=`.
    var next: String?

    enum CodingKeys: String, CodingKey {
        case tasks, revision
        case next = "continue"
    }
}

extension TaskListView: HandWrittenAPIJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        if let next { w.key("continue"); w.string(next) }
        w.key("revision"); w.integer(revision)
        w.key("tasks")
        w.beginArray()
        for task in tasks { task.write(to: &w) }
        w.endArray()
        w.endObject()
    }
}

/// `GET /api/v1/nodes`.
struct NodeListView: Encodable, Sendable {
    var nodes: [NodeView]
    var revision: Int64
}

/// `GET /api/v1/cluster`.
struct ClusterView: Encodable, Sendable {
    var nodeID: String
    var leaderID: String?
    var term: UInt64?
    var commitIndex: UInt64?
    var appliedIndex: UInt64?
    var store: String
    var ready: Bool
    var members: [ClusterMember]
    var defaultScheduler: SchedulingAlgorithm
    var revision: Int64

    init(_ s: ClusterStatus, defaultScheduler: SchedulingAlgorithm, revision: Int64) {
        nodeID = s.nodeID
        leaderID = s.leaderID
        term = s.term
        commitIndex = s.commitIndex
        appliedIndex = s.appliedIndex
        store = s.storeKind
        ready = s.isReady
        members = s.members
        self.defaultScheduler = defaultScheduler
        self.revision = revision
    }

    enum CodingKeys: String, CodingKey {
        case term, store, ready, members, revision
        case nodeID = "node_id"
        case leaderID = "leader_id"
        case commitIndex = "commit_index"
        case appliedIndex = "applied_index"
        case defaultScheduler = "default_scheduler"
    }

    // Explicit nulls: a client can tell "no leader" from a missing field.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nodeID, forKey: .nodeID)
        try c.encode(leaderID, forKey: .leaderID)
        try c.encode(term, forKey: .term)
        try c.encode(commitIndex, forKey: .commitIndex)
        try c.encode(appliedIndex, forKey: .appliedIndex)
        try c.encode(store, forKey: .store)
        try c.encode(ready, forKey: .ready)
        try c.encode(members, forKey: .members)
        try c.encode(defaultScheduler, forKey: .defaultScheduler)
        try c.encode(revision, forKey: .revision)
    }
}

/// `/health`, `/healthz`, `/readyz` when all is well.
struct HealthView: Encodable, Sendable {
    var status: String
    /// The store's alarms (`NOSPACE`), when any is raised: the master still serves reads and
    /// deletes, so it stays ready.
    var alarms: [String]? = nil
}
