import EtcdAPI
import EtcdAPITestSupport
import Logging
import Store
import Synchronization
import Testing

/// Collects log messages (with their metadata) for assertions.
final class CapturedLogs: Sendable {
    private let lines = Locked<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func handler(label: String) -> CapturingLogHandler { CapturingLogHandler(sink: self) }

    fileprivate func append(_ line: String) {
        lines.withLock { $0.append(line) }
    }
}

struct CapturingLogHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        sink.append("\(event.level) \(event.message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
    }
}

/// Members and status for a single in-memory "cluster".
struct StaticClusterInfo: EtcdClusterInfo {
    let clusterID: UInt64 = 7
    let memberID: UInt64 = 1
    let endpoint: String

    func members() async throws -> [EtcdMember] {
        [EtcdMember(id: 1, name: "solo", peerURLs: ["http://127.0.0.1:1"], clientURLs: ["http://\(endpoint)"])]
    }

    func status() async throws -> EtcdMemberStatus {
        EtcdMemberStatus(leaderID: 1, raftTerm: 1, raftIndex: 1, raftAppliedIndex: 1, dbSize: 0, dbSizeInUse: 0)
    }
}

extension EtcdAPITestSuites {
    /// The server over any `ClusterStore` (here a `MemoryStore`), and what it says about methods it
    /// does not serve: named in the error for etcd methods it refuses, named in the log for methods
    /// no service knows (grpc-swift's own answer names none).
    @Suite(.serialized, .enabled(if: Etcdctl.shouldRun, "etcdctl is not installed (apt-get install etcd-client)"))
    struct UnknownMethodTests {
        @Test("refused and unknown methods are named in the error or the log")
        func namesMethods() async throws {
            let logs = CapturedLogs()
            let logger = Logger(label: "etcd-api-test") { logs.handler(label: $0) }
            let port = try FreePort.find()
            let endpoint = "127.0.0.1:\(port)"
            let server = EtcdAPIServer(store: MemoryStore(), info: StaticClusterInfo(endpoint: endpoint),
                                       listen: ("127.0.0.1", port), logger: logger)
            let serving = Task { try await server.run() }
            defer { serving.cancel() }
            let etcdctl = try Etcdctl(endpoints: [endpoint])
            // Served by the in-memory store like by the Raft store.
            #expect(try await etcdctl.ok(["put", "k", "v"]) == "OK\n")
            #expect(try await etcdctl.ok(["get", "k"]) == "k\nv\n")

            let moveLeader = try await etcdctl.run(["move-leader", "2"])
            #expect(!moveLeader.succeeded)
            let added = try await etcdctl.run(["member", "add", "m2", "--peer-urls=http://127.0.0.1:2"])
            #expect(added.stderr.contains("etcdserverpb.Cluster/MemberAdd is not implemented by this server"), "\(added.stderr)")

            // Auth is not in our protos at all: grpc-swift answers for us, the log names the method.
            let auth = try await etcdctl.run(["auth", "enable"])
            #expect(!auth.succeeded)
            #expect(logs.all.contains { $0.contains("call of an unknown method") && $0.contains("etcdserverpb.Auth/") }, "\(logs.all)")
            #expect(logs.all.contains { $0.contains("etcdserverpb.Cluster/MemberAdd") }, "\(logs.all)")
            serving.cancel()
            _ = await serving.result
        }
    }
}
