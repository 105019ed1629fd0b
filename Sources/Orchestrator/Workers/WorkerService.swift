import ClusterModel
import ClusterProto
import Foundation
import GRPCCore
import Logging
import Store

/// Serves `orchestrator.v1.Workers` on every master: joins, heartbeats, status reports and the
/// assignment streams. Every write goes through the `ClusterStore`, which on a follower master
/// passes it to the leader, so a worker may talk to any master.
public struct WorkerService: Orchestrator_V1_Workers.SimpleServiceProtocol {
    let repository: ClusterRepository
    /// Nil or empty: any worker may join (`master --dev`).
    let joinToken: String?
    let heartbeatInterval: Duration
    let now: @Sendable () -> Int64
    let logger: Logger

    public init(repository: ClusterRepository, joinToken: String?, heartbeatInterval: Duration = .seconds(1),
                now: @escaping @Sendable () -> Int64, logger: Logger) {
        self.repository = repository
        self.joinToken = joinToken
        self.heartbeatInterval = heartbeatInterval
        self.now = now
        self.logger = logger
    }

    public func join(request: Orchestrator_V1_JoinRequest, context: ServerContext) async throws -> Orchestrator_V1_JoinResponse {
        if let joinToken, !joinToken.isEmpty, !constantTimeEqual(Array(joinToken.utf8), Array(request.joinToken.utf8)) {
            throw RPCError(code: .permissionDenied, message: "join token does not match this cluster's (--join-token)")
        }
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
        let node = try await mapStoreErrors {
            try await repository.join(id: id, address: request.address,
                                      capacity: Resources(cpu: Int(request.cpuMillicores), memory: Int(request.memoryMb)),
                                      labels: request.labels, now: now())
        }
        try await mapStoreErrors { try await repository.recordHeartbeat(nodeID: id, now: now()) }
        logger.info("worker joined", metadata: ["node": "\(id)", "address": "\(request.address)", "revision": "\(node.revision)"])
        return .with {
            $0.nodeID = id
            $0.heartbeatIntervalMs = Int64(heartbeatInterval.components.seconds * 1000 + heartbeatInterval.components.attoseconds / 1_000_000_000_000_000)
        }
    }

    public func heartbeat(request: Orchestrator_V1_HeartbeatRequest, context: ServerContext) async throws -> Orchestrator_V1_HeartbeatResponse {
        let known = try await mapStoreErrors { () async throws -> Bool in
            do {
                _ = try await repository.node(request.nodeID)
                return true
            } catch RepositoryError.notFound {
                return false
            }
        }
        if known { try await mapStoreErrors { try await repository.recordHeartbeat(nodeID: request.nodeID, now: now()) } }
        return .with { $0.known = known }
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
        let current = try await mapStoreErrors {
            try await repository.apply(report, taskID: request.taskID, nodeID: request.nodeID, epoch: request.epoch, now: now(),
                                       runtimeStartMs: request.runtimeStartMs > 0 ? request.runtimeStartMs : nil)
        }
        return .with { $0.current = current }
    }

    public func assignments(request: Orchestrator_V1_AssignmentsRequest, response: RPCWriter<Orchestrator_V1_AssignmentSet>, context: ServerContext) async throws {
        let nodeID = request.nodeID
        try await mapStoreErrors { _ = try await repository.node(nodeID, consistency: .linearizable) }
        // A fresh read, then the changes after it; a compacted watch (we fell too far behind)
        // starts over from a fresh read rather than missing anything.
        while !Task.isCancelled {
            let (tasks, revision) = try await mapStoreErrors { try await repository.assignments(of: nodeID, consistency: .linearizable) }
            var current: [String: TaskRecord] = [:]
            for t in tasks { current[t.id] = t }
            var sent = Self.signature(current)
            try await response.write(Self.message(current, revision: revision))
            do {
                for try await change in repository.store.watch(key: ClusterRepository.taskPrefix, rangeEnd: KeyRange.prefixEnd(ClusterRepository.taskPrefix),
                                                              fromRevision: revision + 1, prevKV: false) {
                    for event in change.events {
                        let id = String(decoding: event.kv.key.dropFirst(ClusterRepository.taskPrefix.count), as: UTF8.self)
                        if event.kind == .put, let t = try? ClusterRepository.decode(TaskRecord.self, event.kv),
                           t.node == nodeID, t.state == .assigned || t.state == .running {
                            current[id] = t
                        } else {
                            current[id] = nil
                        }
                    }
                    let signature = Self.signature(current)
                    if signature != sent, !change.events.isEmpty {
                        sent = signature
                        try await response.write(Self.message(current, revision: change.revision))
                    }
                }
                return
            } catch StoreError.compacted {
                continue
            }
        }
    }

    // MARK: Helpers

    static func signature(_ tasks: [String: TaskRecord]) -> [String: UInt64] {
        tasks.mapValues(\.epoch)
    }

    static func message(_ tasks: [String: TaskRecord], revision: Int64) -> Orchestrator_V1_AssignmentSet {
        .with { set in
            set.revision = revision
            set.assignments = tasks.values.sorted { $0.id < $1.id }.map { t in
                .with {
                    $0.taskID = t.id
                    $0.epoch = t.epoch
                    $0.spec = Data(ClusterRepository.encode(t.spec))
                }
            }
        }
    }

    /// Store and consensus failures become gRPC statuses a worker can act on (retry elsewhere).
    func mapStoreErrors<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RPCError {
            throw error
        } catch RepositoryError.notFound(let id) {
            throw RPCError(code: .notFound, message: "unknown node or task \(id): join again")
        } catch {
            throw RPCError(code: .unavailable, message: "the cluster store is unavailable: \(error)")
        }
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return diff == 0
}
