import ClusterModel

/// A record kept in the store whose version is the key's mod revision.
public protocol StoredRecord: Codable, Sendable {
    /// The store revision of this version of the record (not encoded).
    var revision: Int64 { get set }
    /// Stamps the record as stored at `revision` (after a read or a write of this version).
    mutating func markStored(revision: Int64)
}

extension StoredRecord {
    public mutating func markStored(revision: Int64) {
        self.revision = revision
    }
}

/// Why a task sits where it is: the scheduler's decision, kept with the task.
public struct PlacementRecord: Sendable, Hashable, Codable {
    public var node: String
    public var score: Double
    public var algorithm: SchedulingAlgorithm
    public var filters: [FilterOutcome]

    public init(node: String, score: Double, algorithm: SchedulingAlgorithm, filters: [FilterOutcome]) {
        self.node = node
        self.score = score
        self.algorithm = algorithm
        self.filters = filters
    }
}

/// A task as stored: its spec and everything the cluster learned about it.
public struct TaskRecord: StoredRecord, Hashable {
    public var id: String
    public var spec: TaskSpec
    public var state: TaskState
    /// The node it is assigned to while assigned or running. A task cancelled there keeps it (where
    /// it ran, for its logs); the other endings and a move back to pending clear it.
    public var node: String?
    /// Raised at every assignment: a worker never runs an assignment older than one it has seen.
    public var epoch: UInt64
    /// Restarts so far (kept in the store, so a new leader continues the count).
    public var retries: Int
    /// Why it is pending, failed or lost; empty otherwise.
    public var reason: String
    public var exitCode: Int?
    public var placement: PlacementRecord?
    /// A pending task waiting out its restart backoff is not scheduled before this time (ms).
    public var notBefore: Int64?
    /// Why the task is moving off its node (a drain), while its copy there is asked to stop; nil
    /// otherwise. The task keeps its node and resources until the worker confirms that the copy
    /// stopped (or the node goes down past the worker's lease), and only then goes back to
    /// pending: a new copy never starts beside one that may still run.
    public var moving: String?
    /// How long the worker's runtime took to create and start the current copy (ms), as reported
    /// with `running`: the runtime's share of the time from submission to running.
    public var runtimeStartMs: Int64?
    /// Milliseconds since the epoch.
    public var createdAt: Int64
    public var updatedAt: Int64
    /// The store revision of this version of the record (not encoded: it is the key's mod revision).
    public var revision: Int64 = 0
    /// The state this version was stored with (not encoded; nil for a record not yet stored). The
    /// repository checks every write's transition from it with `TaskState.canMove`; since each
    /// write is guarded by `revision`, this is exactly the state the write replaces.
    public var storedState: TaskState?

    public mutating func markStored(revision: Int64) {
        self.revision = revision
        self.storedState = state
    }

    public init(id: String, spec: TaskSpec, state: TaskState = .pending, now: Int64) {
        self.id = id
        self.spec = spec
        self.state = state
        self.node = nil
        self.epoch = 0
        self.retries = 0
        self.reason = ""
        self.exitCode = nil
        self.placement = nil
        self.notBefore = nil
        self.createdAt = now
        self.updatedAt = now
    }

    enum CodingKeys: String, CodingKey {
        case id, spec, state, node, epoch, retries, reason, placement, moving
        case exitCode = "exit_code"
        case notBefore = "not_before"
        case runtimeStartMs = "runtime_start_ms"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// A worker node as stored.
public struct NodeRecord: StoredRecord, Hashable {
    public var info: NodeInfo
    /// Where the worker can be reached (for logs).
    public var address: String
    /// The master's clock at the last heartbeat, in milliseconds.
    public var lastHeartbeat: Int64
    /// The SHA-256 of the node's credential (`NodeCredential`); nil for a node registered before
    /// credentials existed. Never shown by the API.
    public var credentialDigest: String?
    public var revision: Int64 = 0

    public init(info: NodeInfo, address: String, lastHeartbeat: Int64, credentialDigest: String? = nil) {
        self.info = info
        self.address = address
        self.lastHeartbeat = lastHeartbeat
        self.credentialDigest = credentialDigest
    }

    enum CodingKeys: String, CodingKey {
        case info, address
        case lastHeartbeat = "last_heartbeat"
        case credentialDigest = "credential_sha256"
    }
}
