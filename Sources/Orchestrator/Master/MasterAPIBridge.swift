import ClusterModel
import ClusterProto
import Foundation
import GRPCCore
import Store
import Synchronization

/// A master as its REST API sees it: status for `/api/v1/cluster`, `/readyz` and the headers, and
/// task logs fetched from the worker over gRPC.
struct MasterAPIBridge: ClusterStatusSource, TaskLogSource {
    let server: MasterServer

    func status() async -> ClusterStatus {
        let s = await server.status()
        let apis = server.masterDirectory.entries().mapValues(\.api)
        let members = s.members.map { m in
            ClusterMember(id: m.name, apiAddress: apis[m.name] ?? "",
                          role: m.name == s.leader ? .leader : (m.name == s.id ? (s.isLeader ? .leader : .follower) : .follower))
        }
        let ready = s.leader != nil
        return ClusterStatus(nodeID: s.id, members: members, leaderID: s.leader,
                             term: s.store == .raft ? s.term : nil,
                             commitIndex: s.store == .raft ? s.commitIndex : nil,
                             appliedIndex: s.store == .raft ? s.appliedIndex : nil,
                             storeKind: s.store.rawValue, isReady: ready,
                             notReadyReason: ready ? "" : "no leader is known yet")
    }

    /// From the Raft node's published leader, not `status()`, which waits for the node's loop.
    func leaderID() async -> String? {
        await server.leaderName()
    }

    func readiness() async -> (ready: Bool, reason: String) {
        await server.readiness()
    }

    func storeUsage() async -> StoreUsage? {
        guard case .raft(let raft) = server.parts else { return nil }
        return raft.store.usage()
    }

    func waitForRevision(_ revision: Int64) async throws {
        switch server.parts {
        case .raft(let raft): try await raft.store.waitForRevision(revision)
        case .etcd(let store, _, _): try await waitForStoreRevision(store, until: revision)
        }
    }

    func logs(task: TaskRecord, node: NodeRecord, limitBytes: Int) async throws -> [UInt8] {
        guard let address = HostPort(parsing: node.address) else {
            throw LogFetchError(apiError: APIError(status: 502, code: "logs_unavailable", message: "node \(node.info.id) has no reachable address"))
        }
        let stub = Orchestrator_V1_Worker.Client(wrapping: try server.workerClients.client(for: address))
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        do {
            let reply = try await stub.logs(.with {
                $0.taskID = task.id
                $0.epoch = task.epoch
                $0.limitBytes = Int64(limitBytes)
            }, options: options)
            return Array(reply.data)
        } catch let error as RPCError where error.code == .notFound {
            throw LogFetchError(apiError: APIError(status: 404, code: "logs_not_found", message: "node \(node.info.id) has no logs for task \(task.id): \(error.message)"))
        } catch let error as RPCError {
            throw LogFetchError(apiError: APIError(status: 502, code: "logs_unavailable", message: "worker \(node.info.id) at \(node.address) did not answer: \(error.message)"))
        }
    }

    func readLogs(task: TaskRecord, node: NodeRecord, query: TaskLogQuery,
                  emit: @escaping @Sendable (TaskLogItem) async throws -> Void) async throws {
        guard let address = HostPort(parsing: node.address) else {
            throw LogFetchError(apiError: APIError(status: 502, code: "logs_unavailable", message: "node \(node.info.id) has no reachable address"))
        }
        let stub = Orchestrator_V1_Worker.Client(wrapping: try server.workerClients.client(for: address))
        var options = CallOptions.defaults
        // A follow lasts as long as the task; past output alone comes at once.
        options.timeout = query.follow ? nil : .seconds(5)
        let request = Orchestrator_V1_FollowLogsRequest.with {
            $0.taskID = task.id
            $0.follow = query.follow
            $0.tailLines = Int64(query.tailLines ?? 0)
            $0.sinceUnixMs = query.sinceUnixMs ?? 0
            $0.limitBytes = Int64(query.limitBytes)
            $0.stream = switch query.stream {
            case .all: .all
            case .stdout: .stdout
            case .stderr: .stderr
            }
        }
        do {
            try await stub.followLogs(request, options: options) { response in
                for try await frame in response.messages {
                    if frame.ended {
                        try await emit(.ended(exitCode: frame.exited ? frame.exitCode : nil))
                        return
                    }
                    try await emit(.output(stream: frame.stream == .stderr ? .stderr : .stdout, unixMs: frame.unixMs, bytes: Array(frame.data)))
                }
            }
        } catch let error as RPCError where error.code == .notFound {
            throw LogFetchError(apiError: APIError(status: 404, code: "logs_not_found", message: "node \(node.info.id) has no logs for task \(task.id): \(error.message)"))
        } catch let error as RPCError where error.code == .unimplemented {
            // A worker from before frames: the plain tail, when that is what was asked.
            guard !query.follow, query.tailLines == nil, query.sinceUnixMs == nil, query.stream == .all else {
                throw LogFetchError(apiError: APIError(status: 501, code: "worker_too_old",
                                                       message: "node \(node.info.id) runs a worker without follow, tail, since or stream; upgrade it"))
            }
            try await emit(.output(stream: .stdout, unixMs: 0, bytes: try await logs(task: task, node: node, limitBytes: query.limitBytes)))
        } catch let error as RPCError {
            throw LogFetchError(apiError: APIError(status: 502, code: "logs_unavailable", message: "worker \(node.info.id) at \(node.address) did not answer: \(error.message)"))
        }
    }

    struct LogFetchError: APIErrorConvertible {
        var apiError: APIError
    }
}

/// The masters' client addresses, for `/api/v1/cluster` and the etcd API's member list: each
/// master records its own under `/orchestrator/masters/<id>` once its store accepts writes; every
/// master keeps a copy that it refreshes in the background.
final class MasterDirectory: Sendable {
    static let prefix = Array("/orchestrator/masters/".utf8)

    /// Where one master serves its clients.
    struct Entry: Codable, Sendable, Hashable {
        /// REST API, `host:port`.
        var api: String
        /// etcd v3 API, `host:port`; empty when not served.
        var etcd: String
        /// The master's Raft id (absent in entries written before membership changes existed):
        /// names a member added without a name (etcd's MemberAdd names none).
        var id: UInt64? = nil
    }

    private let known = Mutex<[String: Entry]>([:])

    func entries() -> [String: Entry] { known.withLock { $0 } }

    /// Registers this master, then refreshes the directory every few seconds until cancelled.
    func run(repository: ClusterRepository, id: String, entry: Entry) async {
        var registered = false
        while !Task.isCancelled {
            if !registered {
                registered = (try? await repository.store.put(Self.prefix + Array(id.utf8), ClusterRepository.encode(entry))) != nil
            }
            if let r = try? await repository.store.list(prefix: Self.prefix, consistency: .serializable) {
                var map: [String: Entry] = [:]
                for kv in r.kvs {
                    if let e = try? JSONDecoder().decode(Entry.self, from: Data(kv.value)) {
                        map[String(decoding: kv.key.dropFirst(Self.prefix.count), as: UTF8.self)] = e
                    }
                }
                known.withLock { $0 = map }
            }
            try? await Task.sleep(for: registered ? .seconds(5) : .milliseconds(200))
        }
    }
}
