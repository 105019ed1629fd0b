import ClusterModel
import Foundation
import Store
import Synchronization

/// A master's role in the cluster, as `GET /api/v1/cluster` reports it.
public enum MemberRole: String, Sendable, Hashable, Codable, CaseIterable {
    case leader, follower, candidate, learner, unknown
}

/// One master of the cluster.
public struct ClusterMember: Sendable, Hashable, Codable {
    public var id: String
    /// Where its REST API listens (`host:port`), for clients that want to talk to the leader.
    public var apiAddress: String
    public var role: MemberRole

    public init(id: String, apiAddress: String, role: MemberRole) {
        self.id = id
        self.apiAddress = apiAddress
        self.role = role
    }

    enum CodingKeys: String, CodingKey {
        case id, role
        case apiAddress = "api_address"
    }
}

/// What only the master process knows about the cluster: consensus state and readiness.
public struct ClusterStatus: Sendable, Hashable {
    /// The id of the master answering.
    public var nodeID: String
    public var members: [ClusterMember]
    /// The current leader, if one is known.
    public var leaderID: String?
    /// Raft term, commit and applied index; nil where the store has none to report (etcd mode may).
    public var term: UInt64?
    public var commitIndex: UInt64?
    public var appliedIndex: UInt64?
    /// "raft" (built-in store), "etcd" or "memory".
    public var storeKind: String
    /// A leader is known and this master's store has caught up: `/readyz` answers 200.
    public var isReady: Bool
    /// Why not ready (shown by `/readyz` with its 503); ignored when ready.
    public var notReadyReason: String

    public init(nodeID: String, members: [ClusterMember] = [], leaderID: String? = nil, term: UInt64? = nil,
                commitIndex: UInt64? = nil, appliedIndex: UInt64? = nil, storeKind: String,
                isReady: Bool, notReadyReason: String = "") {
        self.nodeID = nodeID
        self.members = members
        self.leaderID = leaderID
        self.term = term
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.storeKind = storeKind
        self.isReady = isReady
        self.notReadyReason = notReadyReason
    }
}

/// The master's side of the API: implemented by the master process, faked in tests.
public protocol ClusterStatusSource: Sendable {
    /// The current status (`/api/v1/cluster`, and requests that carry an `Origin`).
    func status() async -> ClusterStatus
    /// The leader's id as this master knows it, nil if none: called on every request (for
    /// `X-Orchestrator-Leader`), so keep it cheap. By default `status().leaderID`.
    func leaderID() async -> String?
    /// Returns once this master's local store has applied `revision` (read-your-writes for
    /// `?min_revision=`, and continue tokens read on another master). The API bounds the wait and
    /// cancels the task when the bound passes, so this may simply wait; it should honour cancellation.
    func waitForRevision(_ revision: Int64) async throws
    /// For `/readyz`: whether this master should get clients now, and why not. May take a round
    /// trip to the leader (it is not called on every request).
    func readiness() async -> (ready: Bool, reason: String)
    /// The store's size against its quota, and its alarms (`/readyz`, `/metrics`); nil when the
    /// store keeps none (an external etcd keeps its own).
    func storeUsage() async -> StoreUsage?
}

extension ClusterStatusSource {
    public func storeUsage() async -> StoreUsage? { nil }

    public func leaderID() async -> String? { await status().leaderID }

    /// Ready as `status()` says.
    public func readiness() async -> (ready: Bool, reason: String) {
        let s = await status()
        guard !s.isReady else { return (true, "") }
        let fallback = s.leaderID == nil ? "no leader is known" : "the store has not caught up"
        return (false, s.notReadyReason.isEmpty ? fallback : s.notReadyReason)
    }
}

/// Fetches a task's output from the worker that runs (or ran) it.
public protocol TaskLogSource: Sendable {
    /// At most the last `limitBytes` bytes of the task's combined output. Throw an
    /// `APIErrorConvertible` error to choose the answer; anything else becomes 502 `logs_unavailable`.
    func logs(task: TaskRecord, node: NodeRecord, limitBytes: Int) async throws -> [UInt8]

    /// The output `query` selects, stdout and stderr told apart, passed to `emit` as written; with
    /// `query.follow`, new output until the task's copy ends, then `.ended`. Errors as for `logs`.
    func readLogs(task: TaskRecord, node: NodeRecord, query: TaskLogQuery,
                  emit: @escaping @Sendable (TaskLogItem) async throws -> Void) async throws
}

extension TaskLogSource {
    /// For sources that only have `logs`: the plain query, as stdout.
    public func readLogs(task: TaskRecord, node: NodeRecord, query: TaskLogQuery,
                         emit: @escaping @Sendable (TaskLogItem) async throws -> Void) async throws {
        guard !query.follow, query.tailLines == nil, query.sinceUnixMs == nil, query.stream == .all else {
            throw APIError(status: 501, code: "not_implemented", message: "this log source only returns the tail of the combined output")
        }
        try await emit(.output(stream: .stdout, unixMs: 0, bytes: try await logs(task: task, node: node, limitBytes: query.limitBytes)))
    }
}

/// Which of a task's output streams (`stream` query parameter).
public enum TaskLogStream: String, Sendable, Hashable {
    case all, stdout, stderr
}

/// What part of a task's output `GET /api/v1/tasks/{id}/logs` asks for.
public struct TaskLogQuery: Sendable, Hashable {
    public var follow: Bool
    /// The last lines only (nil: no line limit).
    public var tailLines: Int?
    /// Output written at or after this time only, in milliseconds since 1970.
    public var sinceUnixMs: Int64?
    /// At most this many bytes of past output, the newest.
    public var limitBytes: Int
    public var stream: TaskLogStream

    public init(follow: Bool = false, tailLines: Int? = nil, sinceUnixMs: Int64? = nil, limitBytes: Int, stream: TaskLogStream = .all) {
        self.follow = follow
        self.tailLines = tailLines
        self.sinceUnixMs = sinceUnixMs
        self.limitBytes = limitBytes
        self.stream = stream
    }
}

/// A piece of a task's log as a `TaskLogSource` delivers it.
public enum TaskLogItem: Sendable, Hashable {
    /// Bytes written to `stream` (`.stdout` or `.stderr`) at `unixMs` (ms since 1970).
    case output(stream: TaskLogStream, unixMs: Int64, bytes: [UInt8])
    /// The copy followed has ended and all its output was delivered; its exit code when it exited.
    case ended(exitCode: Int32?)
}

/// Returns once `store`'s local (serializable) reads see `revision`: woken by the store's apply
/// when it can tell (`RevisionWaiting`: the built-in and in-memory stores), otherwise polled every
/// `interval` (etcd, whose progress this master only sees by reading).
public func waitForStoreRevision(_ store: any ClusterStore, until revision: Int64,
                                 interval: Duration = .milliseconds(10)) async throws {
    if let notifying = store as? any RevisionWaiting {
        try await notifying.waitForRevision(revision)
        return
    }
    while true {
        let current = try await store.range(RangeRequest(key: Array("/orchestrator/".utf8), limit: 1, countOnly: true),
                                            consistency: .serializable).revision
        if current >= revision { return }
        try await Task.sleep(for: interval)
    }
}

/// Everything the API is configured with besides its collaborators.
public struct APIConfiguration: Sendable {
    /// Limits on submitted tasks (including the 1 MiB body limit).
    public var limits = TaskLimits()
    /// The cluster's scheduler (`--scheduler`), reported by `GET /api/v1/cluster`; a task without
    /// a `scheduler` of its own is placed by it.
    public var defaultScheduler: SchedulingAlgorithm = .binPacking
    /// With a token, every route but `/health`, `/healthz` and `/readyz` needs
    /// `Authorization: Bearer <token>`; nil or empty leaves the API open.
    public var apiToken: String?
    /// Set for an API on loopback without a token (`master --dev`): refuses foreign `Host` and
    /// `Origin` headers (403), so web pages in a browser on this machine cannot drive it.
    public var crossSiteGuard: CrossSiteGuard?
    /// The API serves HTTPS: `https` is the scheme of its own and its peers' origins
    /// (`ClusterOrigins`, for the dashboard's calls to another master).
    public var tls = false
    /// Wall clock in milliseconds since the epoch (task timestamps).
    public var now: @Sendable () -> Int64 = APIConfiguration.wallClock
    /// New task ids; the default is time-sortable, so listing in key order is submission order.
    public var makeID: @Sendable () -> String = TaskIDGenerator.shared.next
    /// Bound on the store work of one request (reads, writes held through an election): past it
    /// the answer is 503 (`no_leader` when no leader is known, else `store_timeout`).
    public var requestTimeout: Duration = .seconds(10)
    /// Bound on `?min_revision=` waits: past it the answer is 504 `revision_timeout`.
    public var minRevisionTimeout: Duration = .seconds(5)
    /// Comment lines sent on idle event streams, so proxies keep them open and a vanished client
    /// is noticed (the write fails) within this interval.
    public var keepaliveInterval: Duration = .seconds(15)
    /// Most bytes of events an event stream queues for a client that reads slower than the cluster
    /// changes. Past it the stream stops watching until the client has read half of them, then
    /// catches up from the store's history: the master's memory stays bounded and the client
    /// misses nothing (unless that history is compacted meanwhile: then `event: error`).
    public var eventStreamBacklogBytes = 8 << 20
    /// Event streams open at once on this master; one more is answered 503
    /// `too_many_event_streams` with `Retry-After`. Each may hold `eventStreamBacklogBytes`.
    public var maxEventStreams = 256
    /// A connection with no request in progress for this long is closed (an open event stream is
    /// a request in progress, and its keepalives flow more often): a client cannot hold sockets
    /// open for free.
    public var idleTimeout: Duration = .seconds(60)
    /// REST connections served at once; past it new ones wait to be accepted until one closes
    /// (with the idle timeout above, a client holding sockets open only delays others briefly).
    public var maxConnections = 4_096
    /// Log bytes returned when the request does not say (`limit_bytes`), and the most it may ask.
    public var defaultLogBytes = 1 << 20
    public var maxLogBytes = 16 << 20
    /// Largest `limit` of a task listing, and the page size when a listing gives none: a client
    /// that never pages still gets a bounded answer (and `continue` for the rest).
    public var maxPageSize = 10_000
    public var defaultPageSize = 1_000

    public init() {}

    /// Milliseconds since 1970 from the system clock.
    public static let wallClock: @Sendable () -> Int64 = { wallMilliseconds() }
}

func wallMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}

/// Task ids that sort by creation time and are safe in URLs: 10 characters of milliseconds and
/// 16 random characters in Crockford's base32 (lower case), as a ULID. Within one millisecond the
/// random part is incremented, so ids from one master are strictly increasing.
public final class TaskIDGenerator: Sendable {
    public static let shared = TaskIDGenerator()

    private struct State {
        var lastTime: Int64 = -1
        var random: (hi: UInt16, lo: UInt64) = (0, 0)
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Int64

    public init(clock: @escaping @Sendable () -> Int64 = APIConfiguration.wallClock) {
        self.clock = clock
    }

    static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    public func next() -> String {
        let now = clock()
        let (time, hi, lo) = state.withLock { s -> (Int64, UInt16, UInt64) in
            if now > s.lastTime {
                var g = SystemRandomNumberGenerator()
                s.lastTime = now
                s.random = (UInt16.random(in: 0...UInt16.max, using: &g), g.next())
            } else {
                // Same millisecond (or the clock stepped back): keep the time, count up.
                let (lo, overflow) = s.random.lo.addingReportingOverflow(1)
                s.random = (overflow ? s.random.hi &+ 1 : s.random.hi, lo)
            }
            return (s.lastTime, s.random.hi, s.random.lo)
        }
        var out = [UInt8](repeating: 0, count: 26)
        var t = UInt64(max(time, 0))
        for i in stride(from: 9, through: 0, by: -1) {
            out[i] = Self.alphabet[Int(t & 31)]
            t >>= 5
        }
        // 80 random bits: hi (16) then lo (64), 5 bits per character from the least significant end.
        var lowBits = lo, highBits = UInt64(hi)
        for i in stride(from: 25, through: 10, by: -1) {
            out[i] = Self.alphabet[Int(lowBits & 31)]
            lowBits = (lowBits >> 5) | ((highBits & 31) << 59)
            highBits >>= 5
        }
        return String(decoding: out, as: UTF8.self)
    }
}
