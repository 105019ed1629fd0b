import Raft
import Synchronization

/// The built-in `ClusterStore`: one replica of the key-value state machine, replicated by a
/// `RaftNode`.
///
/// - Writes encode a `Command`, propose it and decode the state machine's `Response`. On a follower
///   they go to the leader through the injected `forward` closure (in process for tests, gRPC
///   between masters), and through an election they are retried until `Options.writeTimeout`, so a
///   client is held for a moment rather than told to go elsewhere (DESIGN.md). Each write carries a
///   `RequestID` drawn once per call, and every retry carries the same one, so a retry of a write
///   that did reach the log (a forwarding call broken after the leader proposed it, a leader that
///   stopped with the entry replicated) is answered with the first application's response instead
///   of being applied twice.
/// - Linearizable reads wait for ReadIndex, then read the local state machine; serializable reads
///   read it at once.
/// - Watches are served by this replica's `WatchHub`, fed by its `KVStateMachine`.
///
/// Build one with `RaftStore.makeStateMachine()` (the machine must feed the hub before the node
/// starts applying), then the `RaftNode` over that machine, then `RaftStore(node:machine:hub:...)`.
/// The owner runs a `LeaseExpirer` next to the node so expired leases are revoked while it leads.
public final class RaftStore: ClusterStore {
    /// Tunables.
    public struct Options: Sendable {
        /// How long a write or read keeps retrying through elections and leader changes.
        public var requestTimeout: Duration = .seconds(5)
        /// The pause between retries while no leader is known.
        public var retryBackoff: Duration = .milliseconds(10)
        /// The storage quota in bytes of `KeyValueStore.dataBytes` (etcd's `--quota-backend-bytes`);
        /// 0: none. A write that would grow the store past it is refused here, and this member
        /// raises the NOSPACE alarm (`StoreQuota`).
        public var quotaBytes: Int64 = 0
        /// This member's id, named in the alarms it raises.
        public var memberID: UInt64 = 0
        public init() {}
    }

    /// Sends a command to the leader `NodeID` and returns its response; the leader runs it with
    /// `handleForwarded(_:)`. Throwing `RaftNodeError.notLeader` makes this replica retry.
    public typealias Forward = @Sendable (NodeID, Command) async throws -> Response

    public let machine: KVStateMachine
    public let hub: WatchHub
    private let now: @Sendable () -> Int64
    private let forward: Forward?
    let options: Options
    // The node is captured in closures so this class need not be generic over the node's clock.
    private let proposeBytes: @Sendable ([UInt8]) async throws -> [UInt8]
    private let proposeBatchBytes: @Sendable ([[UInt8]]) async -> [Result<[UInt8], any Error>]
    private let readIndex: @Sendable () async throws -> Void
    let nodeStatus: @Sendable () async -> RaftStatus
    /// The node's last known leader, read without a trip through its loop, and this replica's id.
    private let leaderHintSource: @Sendable () -> NodeID
    private let selfID: NodeID
    /// Time from the node's injected clock (not a global one), so a test clock drives the retry
    /// deadlines and pauses too: `startTimer()` returns a function giving the time since.
    private let startTimer: @Sendable () -> @Sendable () -> Duration
    private let pause: @Sendable (Duration) async throws -> Void
    /// Draws the id of each write (random in production; a seeded sequence in tests).
    private let requestID: @Sendable () -> RequestID

    /// A state machine wired to a new hub: pass both to the `RaftNode` and to `init`.
    public static func makeStateMachine(store: KeyValueStore = KeyValueStore()) -> (machine: KVStateMachine, hub: WatchHub) {
        let hub = WatchHub()
        hub.advance(to: store.revision)
        let machine = KVStateMachine(store: store, onEvents: { [hub] events in hub.publish(events) },
                                     onRestore: { [hub] revision in hub.advance(to: revision) })
        return (machine, hub)
    }

    /// - Parameters:
    ///   - node: the Raft node replicating `machine`.
    ///   - now: the lease clock in milliseconds; only the leader's is used to stamp lease commands.
    ///   - forward: how writes reach the leader when this replica does not lead; nil makes a
    ///     follower answer writes with `RaftNodeError.notLeader`.
    ///   - requestID: draws each write's request id; 128 random bits by default.
    public init<C: Clock>(
        node: RaftNode<C>, machine: KVStateMachine, hub: WatchHub, now: @escaping @Sendable () -> Int64,
        forward: Forward? = nil, options: Options = Options(),
        requestID: @escaping @Sendable () -> RequestID = RaftStore.randomRequestID
    ) where C.Duration == Duration {
        self.requestID = requestID
        self.machine = machine
        self.hub = hub
        self.now = now
        self.forward = forward
        self.options = options
        self.proposeBytes = { try await node.propose($0) }
        self.proposeBatchBytes = { await node.propose(batch: $0) }
        self.readIndex = { try await node.linearizableRead() }
        self.nodeStatus = { await node.status() }
        self.leaderHintSource = { node.leaderHint }
        self.selfID = node.id
        let clock = node.clock
        self.startTimer = {
            let start = clock.now
            return { start.duration(to: clock.now) }
        }
        self.pause = { try await clock.sleep(for: $0) }
    }

    // MARK: Writes

    /// 128 bits from the system's generator.
    public static let randomRequestID: @Sendable () -> RequestID = {
        var generator = SystemRandomNumberGenerator()
        return RequestID.random(using: &generator)
    }

    /// Proposes `command` here if this replica leads, else forwards it to the leader, retrying
    /// through leader changes until the deadline, always under one request id, so a retry of a write
    /// that did reach the log is not applied again. A proposal that timed out here may still commit
    /// later: it fails (the caller cannot know), and a client's own retry is a new request.
    func execute(_ command: Command) async throws -> Response {
        let command: Command = if case .identified = command { command } else { .identified(requestID(), command) }
        let elapsed = startTimer()
        let timeout = options.requestTimeout
        // A follower that knows its leader forwards at once: asking its own loop first costs two
        // thread hand-offs, and under load the loop answers only after the disk sync it is in.
        // A stale hint fails retryably and falls through to the loop's own view below.
        if let forward, case let leader = leaderHintSource(), leader != noNode, leader != selfID {
            do {
                return try await forward(leader, command)
            } catch let error as RaftNodeError where error.isRetryable && elapsed() < timeout {}
        }
        while true {
            do {
                return try await propose(command)
            } catch RaftNodeError.notLeader(let leader) {
                if leader != noNode, let forward {
                    do {
                        return try await forward(leader, command)
                    } catch let error as RaftNodeError {
                        // The leader we knew has stepped down or is unreachable: find the next one.
                        guard error.isRetryable, elapsed() < timeout else { throw error }
                    }
                } else if forward == nil && leader != noNode {
                    throw RaftNodeError.notLeader(leader: leader)
                }
                guard elapsed() < timeout else { throw RaftNodeError.notLeader(leader: leader) }
            } catch RaftNodeError.proposalDropped {
                guard elapsed() < timeout else { throw RaftNodeError.proposalDropped }
            }
            // Polling with a short pause: the node offers no "leader known" notification.
            try await pause(options.retryBackoff)
        }
    }

    /// Runs a command another replica forwarded because this one leads: proposed here only (never
    /// forwarded again, so a stale hint cannot loop), with lease times restamped by this leader's
    /// clock, as only the leader's clock decides expiry.
    public func handleForwarded(_ command: Command) async throws -> Response {
        try await propose(command)
    }

    /// Runs commands another replica forwarded in one call, proposed together: each is answered
    /// as `handleForwarded(_:)` would answer it, in order.
    public func handleForwarded(batch commands: [Command]) async -> [Result<Response, any Error>] {
        let results = await proposeBatchBytes(commands.map { stamped($0).encoded() })
        return results.map { result in result.flatMap { bytes in Result { try Response(decoding: bytes) } } }
    }

    private func propose(_ command: Command) async throws -> Response {
        try Response(decoding: try await proposeBytes(stamped(command).encoded()))
    }

    /// `command` with its lease times taken from this replica's clock.
    private func stamped(_ command: Command) -> Command {
        switch command {
        case .identified(let id, let inner): .identified(id, stamped(inner))
        case .leaseGrant(let id, let ttl, _): .leaseGrant(id: id, ttl: ttl, now: now())
        case .leaseKeepAlive(let id, _): .leaseKeepAlive(id: id, now: now())
        case .leaseRenewAll: .leaseRenewAll(now: now())
        default: command
        }
    }

    // MARK: Reads

    /// Waits until the local state machine reflects every write committed before the call,
    /// retrying through elections (a read is idempotent, so timeouts retry too).
    func waitLinearizable() async throws {
        let elapsed = startTimer()
        while true {
            do {
                try await readIndex()
                return
            } catch let error as RaftNodeError {
                guard error.isRetryable || error == .timeout, elapsed() < options.requestTimeout else { throw error }
            }
            try await pause(options.retryBackoff)
        }
    }

    /// The leader this replica's node last heard of (`noNode` if none), read without waiting for
    /// the node's loop: a hint, as fresh as the loop's last `Ready`.
    public var leaderHint: NodeID { leaderHintSource() }

    /// This replica's Raft state: role, term and known leader (the master's role, `LeaseExpirer`).
    public func status() async -> RaftStatus { await nodeStatus() }

    // MARK: ClusterStore

    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        if consistency == .linearizable { try await waitLinearizable() }
        return try machine.read { (store) throws(StoreError) in try store.range(request) }
    }

    public func put(_ request: PutRequest) async throws -> PutResponse {
        try Self.refuseOversized([request])
        try await checkQuota(.put(request))
        return try await execute(.put(request)).putResponse()
    }

    /// Refuses puts over `maxRequestBytes` before they are proposed, as etcd's server does: the
    /// state machine would refuse them too, but only after replicating and syncing megabytes on
    /// every replica (which under load outlasted the request timeout).
    static func refuseOversized(_ puts: [PutRequest]) throws(StoreError) {
        for put in puts where put.key.count + put.value.count > maxRequestBytes {
            throw .requestTooLarge(size: put.key.count + put.value.count, limit: maxRequestBytes)
        }
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse {
        try await execute(.deleteRange(request)).deleteRangeResponse()
    }

    public func txn(_ request: TxnRequest) async throws -> TxnResponse {
        try Self.refuseOversized((request.success + request.failure).compactMap { op in
            if case .put(let put) = op { put } else { nil }
        })
        try await checkQuota(.txn(request))
        return try await execute(.txn(request)).txnResponse()
    }

    public func compact(revision: Int64) async throws {
        try await execute(.compact(revision: revision)).compactResponse()
    }

    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant {
        try await checkQuota(.leaseGrant(id: id, ttl: ttl, now: 0))
        return try await execute(.leaseGrant(id: id, ttl: ttl, now: now())).leaseGrantResponse()
    }

    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant {
        try await execute(.leaseKeepAlive(id: id, now: now())).leaseKeepAliveResponse()
    }

    public func revokeLease(_ id: LeaseID) async throws {
        try await execute(.leaseRevoke(id: id)).leaseRevokeResponse()
    }

    /// Read linearizably from the local replica with the local clock. Replicas' clocks are assumed
    /// close (the expiry itself is decided by the leader alone, so skew only shifts what is reported).
    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus {
        try await waitLinearizable()
        let time = now()
        return try machine.read { (store) throws(StoreError) in try store.timeToLive(id, now: time) }
    }

    /// Starts linearizably: the watch is registered once this replica has applied every write
    /// committed before the call, so a watch on a lagging follower still sees (or is refused for)
    /// exactly what a watch on the leader would, e.g. a compaction that was just acknowledged.
    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchResponse, any Error>.makeStream()
        let relay = Task {
            do {
                try await waitLinearizable()
                for try await response in localWatch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV) {
                    continuation.yield(response)
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        // The consumer stopping cancels the relay, which ends the hub's stream and unregisters it.
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }

    /// A watch served from this replica's applied state as it is now.
    func localWatch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        // Hub lock, then the machine's lock: the machine publishes outside its lock, so no cycle.
        hub.watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV) { key, rangeEnd, from, prevKV in
            try machine.read { (store) throws(StoreError) in
                (try store.events(key: key, rangeEnd: rangeEnd, fromRevision: from, prevKV: prevKV), store.revision)
            }
        }
    }
}

extension RaftNodeError {
    /// Errors after which the request certainly was not applied and may be sent again.
    var isRetryable: Bool {
        switch self {
        case .notLeader, .proposalDropped: true
        case .timeout, .stopped, .rejected, .storage: false
        }
    }
}

/// Revokes expired leases while its replica leads: the one place lease expiry is decided, by the
/// leader's clock, and replicated as ordinary `leaseRevoke` commands so every replica deletes the
/// same keys at the same revision.
///
/// Each time it finds its replica newly leading (a new term) it first proposes `leaseRenewAll`:
/// expiries were stamped by the previous leader's clock, and clients need a full TTL to reach the
/// new leader before their leases may lapse (etcd's lessor `Promote`).
public struct LeaseExpirer: Sendable {
    let store: RaftStore
    let now: @Sendable () -> Int64
    let interval: Duration

    /// - Parameters:
    ///   - now: the same lease clock as the store's, in milliseconds.
    ///   - interval: how often to check; expiry is observed at most this late.
    public init(store: RaftStore, now: @escaping @Sendable () -> Int64, interval: Duration = .milliseconds(100)) {
        self.store = store
        self.now = now
        self.interval = interval
    }

    /// Runs until the calling task is cancelled.
    public func run() async {
        var renewedTerm: UInt64?
        while !Task.isCancelled {
            renewedTerm = await step(renewedTerm: renewedTerm)
            try? await Task.sleep(for: interval)
        }
    }

    /// One check; returns the term in which leases were last renewed by this leader (nil: none).
    /// Failed proposals are simply tried again on the next check.
    func step(renewedTerm: UInt64?) async -> UInt64? {
        let status = await store.status()
        guard status.role == .leader else { return nil }
        if renewedTerm != status.term {
            guard (try? await store.handleForwarded(.leaseRenewAll(now: now()))) != nil else { return nil }
            return status.term
        }
        let time = now()
        let expired = store.machine.read { $0.expiredLeases(now: time) }
        for id in expired {
            // leaseNotFound just means someone revoked it first; any failure is retried next time.
            _ = try? await store.handleForwarded(.leaseRevoke(id: id))
        }
        return renewedTerm
    }
}
