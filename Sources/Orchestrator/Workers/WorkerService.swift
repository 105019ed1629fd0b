import ClusterModel
import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import Logging
import Store
import Synchronization

/// Serves `orchestrator.v1.Workers` on every master: joins, heartbeats, status reports and the
/// assignment streams. Every write goes through the `ClusterStore`, which on a follower master
/// passes it to the leader, so a worker may talk to any master.
public struct WorkerService: Orchestrator_V1_Workers.SimpleServiceProtocol {
    let repository: ClusterRepository
    /// Nil or empty: any worker may join (`master --dev`).
    let joinToken: String?
    let heartbeatInterval: Duration
    /// Sent to each worker on join (`JoinResponse.lease_ms`); zero: none.
    let lease: Duration
    let now: @Sendable () -> Int64
    let logger: Logger
    let credentials = CredentialCache()
    /// With TLS, only worker certificates may call; a worker certificate also admits a new node
    /// without the join token (as the token would).
    let authorization: CallerAuthorization
    /// Open assignment streams, against `maxAssignmentStreams`.
    public let assignmentStreams: StreamSlots
    /// This master's copy of the records (`MasterServer` runs one on every master): assignment
    /// streams are served from its tasks by node. Nil, or a cache that does not catch up in
    /// time: each stream reads every task from the store and watches every task change, as
    /// before the cache served them.
    let cache: ClusterCache?

    /// - Parameter maxAssignmentStreams: assignment streams served at once (each holds a store
    ///   watch and a worker's task set); one more is refused with RESOURCE_EXHAUSTED. A worker
    ///   keeps one, so this is a few times the largest expected cluster.
    /// - Parameter lease: the worker lease (`HealthPolicy.workerLease`): a worker that no master
    ///   has answered for this long has stopped its tasks. Zero: no lease is given.
    public init(repository: ClusterRepository, joinToken: String?, heartbeatInterval: Duration = .seconds(1), lease: Duration = .zero,
                authorization: CallerAuthorization = .unauthenticated, now: @escaping @Sendable () -> Int64, logger: Logger,
                maxAssignmentStreams: Int = 4096, cache: ClusterCache? = nil) {
        self.repository = repository
        self.cache = cache
        self.lease = lease
        self.authorization = authorization
        self.joinToken = joinToken
        self.heartbeatInterval = heartbeatInterval
        self.now = now
        self.logger = logger
        self.assignmentStreams = StreamSlots(limit: maxAssignmentStreams)
    }

    public func join(request: Orchestrator_V1_JoinRequest, context: ServerContext) async throws -> Orchestrator_V1_JoinResponse {
        let certified = try authorization.caller(context, mustBe: [.worker]) != nil
        guard request.cpuMillicores > 0, request.memoryMb > 0 else {
            throw RPCError(code: .invalidArgument, message: "cpu_millicores and memory_mb must be positive")
        }
        guard HostPort(parsing: request.address) != nil else {
            throw RPCError(code: .invalidArgument, message: "address \"\(request.address)\" is not host:port")
        }
        let id = request.nodeID.isEmpty ? NodeInfo.newID(hostname: request.hostname) : request.nodeID
        guard NodeInfo.isValidID(id) else {
            throw RPCError(code: .invalidArgument, message: "node id \"\(id)\" must be 1-63 characters of a-z, 0-9 and '-'")
        }
        let tokenAccepted = certified
            || joinToken.map { $0.isEmpty || APIAuth.constantTimeEquals(Array($0.utf8), Array(request.joinToken.utf8)) } ?? true
        let (node, issued) = try await mapStoreErrors {
            try await repository.join(id: id, address: request.address,
                                      capacity: Resources(cpu: Int(request.cpuMillicores), memory: Int(request.memoryMb)),
                                      labels: request.labels, now: now(),
                                      presentedCredential: request.nodeCredential, tokenAccepted: tokenAccepted)
        }
        credentials.remember(nodeID: id, digest: node.credentialDigest)
        try await mapStoreErrors { try await repository.recordHeartbeat(nodeID: id, now: now()) }
        logger.info("worker joined", metadata: ["node": "\(id)", "address": "\(request.address)", "revision": "\(node.revision)",
                                                "credential": "\(issued == nil ? "kept" : "issued")"])
        return .with {
            $0.nodeID = id
            $0.heartbeatIntervalMs = heartbeatInterval.wholeMilliseconds
            $0.leaseMs = lease.wholeMilliseconds
            $0.nodeCredential = issued?.secret ?? request.nodeCredential
        }
    }

    public func heartbeat(request: Orchestrator_V1_HeartbeatRequest, context: ServerContext) async throws -> Orchestrator_V1_HeartbeatResponse {
        try authorization.caller(context, mustBe: [.worker])
        // An unknown node is told so (it joins again); a known one must prove it is that node.
        let node = try await mapStoreErrors { try await repository.readNode(request.nodeID).node }
        guard let node else { return .with { $0.known = false } }
        try authorize(node: node, credential: request.nodeCredential)
        try await mapStoreErrors { try await repository.recordHeartbeat(nodeID: request.nodeID, now: now()) }
        return .with { $0.known = true }
    }

    public func reportStatus(request: Orchestrator_V1_StatusReport, context: ServerContext) async throws -> Orchestrator_V1_StatusAck {
        let report: TaskReport
        switch request.state {
        case .running: report = .running
        case .completed: report = .completed
        case .failed: report = .failed(exitCode: request.hasExitCode_p ? Int(request.exitCode) : nil, reason: request.reason)
        case .cancelled: report = .cancelled(reason: request.reason)
        case .unspecified, .UNRECOGNIZED:
            throw RPCError(code: .invalidArgument, message: "state must be running, completed, failed or cancelled")
        }
        try authorization.caller(context, mustBe: [.worker])
        try await authenticate(nodeID: request.nodeID, credential: request.nodeCredential)
        let current = try await mapStoreErrors {
            try await repository.apply(report, taskID: request.taskID, nodeID: request.nodeID, epoch: request.epoch, now: now(),
                                       runtimeStartMs: request.runtimeStartMs > 0 ? request.runtimeStartMs : nil)
        }
        return .with { $0.current = current }
    }

    // MARK: Credentials

    /// Refuses a call for `node` that does not carry its credential.
    func authorize(node: NodeRecord, credential: String) throws {
        credentials.remember(nodeID: node.info.id, digest: node.credentialDigest)
        guard let digest = node.credentialDigest, !credential.isEmpty, NodeCredential.matches(presented: credential, stored: digest) else {
            throw RPCError(code: .permissionDenied, message: "this call does not carry node \(node.info.id)'s credential: join again")
        }
    }

    /// `authorize` from the digest this master last saw for `nodeID`, reading the node only the
    /// first time or when the credential does not match what is remembered (the node may have
    /// been removed and registered again): reports come at the rate tasks change, and need no
    /// extra store read each.
    func authenticate(nodeID: String, credential: String) async throws {
        if let digest = credentials.digest(of: nodeID), !credential.isEmpty, NodeCredential.matches(presented: credential, stored: digest) {
            return
        }
        let node = try await mapStoreErrors { try await repository.node(nodeID) }
        try authorize(node: node, credential: credential)
    }

    // MARK: Helpers

    /// Store and consensus failures become gRPC statuses a worker can act on (retry elsewhere).
    func mapStoreErrors<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RPCError {
            throw error
        } catch RepositoryError.permissionDenied(let why) {
            throw RPCError(code: .permissionDenied, message: why)
        } catch RepositoryError.notFound(let id) {
            throw RPCError(code: .notFound, message: "unknown node or task \(id): join again")
        } catch {
            throw RPCError(code: .unavailable, message: "the cluster store is unavailable: \(error)")
        }
    }
}

/// The credential digests a master has read, by node id: immutable once issued, so remembering
/// them is safe; a mismatch falls back to a store read.
final class CredentialCache: Sendable {
    private let digests = Mutex<[String: String]>([:])

    func digest(of nodeID: String) -> String? { digests.withLock { $0[nodeID] } }

    func remember(nodeID: String, digest: String?) {
        digests.withLock { $0[nodeID] = digest }
    }
}

/// A count of open streams against a limit, shared by the tasks that serve them.
public final class StreamSlots: Sendable {
    /// Streams allowed at once.
    public let limit: Int
    private let open = Atomic<Int>(0)
    private let refusedCount = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
    }

    /// Takes a slot; false (and counted as refused) when all are taken.
    func take() -> Bool {
        if open.add(1, ordering: .relaxed).newValue > limit {
            open.subtract(1, ordering: .relaxed)
            refusedCount.add(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func give() {
        open.subtract(1, ordering: .relaxed)
    }

    /// Streams open now.
    public var count: Int { open.load(ordering: .relaxed) }
    /// Streams refused since the start.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }
}
