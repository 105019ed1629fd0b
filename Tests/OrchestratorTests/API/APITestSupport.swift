import ClusterModel
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// A `ClusterStatusSource` whose status a test sets, and whose `waitForRevision` waits for the store's apply.
final class FakeStatus: ClusterStatusSource {
    let current: Mutex<ClusterStatus>
    let store: any ClusterStore

    init(store: any ClusterStore, status: ClusterStatus = FakeStatus.leader) {
        self.store = store
        self.current = Mutex(status)
    }

    static let leader = ClusterStatus(
        nodeID: "m1",
        members: [ClusterMember(id: "m1", apiAddress: "127.0.0.1:8080", role: .leader),
                  ClusterMember(id: "m2", apiAddress: "127.0.0.1:8081", role: .follower)],
        leaderID: "m1", term: 3, commitIndex: 40, appliedIndex: 39, storeKind: "memory", isReady: true)

    func status() async -> ClusterStatus { current.withLock { $0 } }

    func set(_ change: (inout ClusterStatus) -> Void) { current.withLock { change(&$0) } }

    /// What `storeUsage` answers (nil: a store without a quota).
    let usage = Mutex<StoreUsage?>(nil)
    func storeUsage() async -> StoreUsage? { usage.withLock { $0 } }

    /// Set: this master has applied no revision past it (a lagging follower), so waits for later
    /// revisions, which the store (the cluster) has, never end.
    let appliedCap = Mutex<Int64?>(nil)

    func waitForRevision(_ revision: Int64) async throws {
        if let cap = appliedCap.withLock({ $0 }), revision > cap {
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        try await waitForStoreRevision(store, until: revision)
    }
}

/// Logs from a dictionary; unknown tasks throw a plain error (the API answers 502).
struct FakeLogs: TaskLogSource {
    var logs: [String: String] = [:]

    struct Unreachable: Error {}

    func logs(task: TaskRecord, node: NodeRecord, limitBytes: Int) async throws -> [UInt8] {
        guard let text = logs[task.id] else { throw Unreachable() }
        return Array(Array(text.utf8).suffix(limitBytes))
    }

    /// Tasks whose ids end in "f" have framed output: "out\n" on stdout then "err\n" on stderr at
    /// 1700000000000 ms, and a follow ends with exit code 7. The query is echoed on stdout first.
    func readLogs(task: TaskRecord, node: NodeRecord, query: TaskLogQuery,
                  emit: @escaping @Sendable (TaskLogItem) async throws -> Void) async throws {
        guard logs[task.id] == "framed" else {
            guard !query.follow, query.tailLines == nil, query.sinceUnixMs == nil, query.stream == .all else {
                throw APIError(status: 501, code: "not_implemented", message: "plain fake")
            }
            try await emit(.output(stream: .stdout, unixMs: 0, bytes: try await logs(task: task, node: node, limitBytes: query.limitBytes)))
            return
        }
        try await emit(.output(stream: .stdout, unixMs: 1, bytes: Array("query \(query.tailLines.map(String.init) ?? "-") \(query.sinceUnixMs.map(String.init) ?? "-") \(query.stream.rawValue) \(query.limitBytes)\n".utf8)))
        if query.stream != .stderr { try await emit(.output(stream: .stdout, unixMs: 1_700_000_000_000, bytes: Array("out\n".utf8))) }
        if query.stream != .stdout { try await emit(.output(stream: .stderr, unixMs: 1_700_000_000_000, bytes: Array("err\n".utf8))) }
        if query.follow { try await emit(.ended(exitCode: 7)) }
    }
}

/// Sequential ids (t001, t002, …) and a fixed clock, so responses are predictable.
final class Counter: Sendable {
    let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}

/// One API over a fresh `MemoryStore`, with the helpers the tests share.
struct APIFixture {
    let store: any ClusterStore
    let memory: MemoryStore
    let repository: ClusterRepository
    let status: FakeStatus
    let api: OrchestratorAPI

    static let now: Int64 = 1_700_000_000_000

    init(token: String? = nil, logs: [String: String] = [:], store: (any ClusterStore)? = nil,
         configure: (inout APIConfiguration) -> Void = { _ in }) {
        let memory = MemoryStore()
        self.memory = memory
        self.store = store ?? memory
        repository = ClusterRepository(store: self.store)
        status = FakeStatus(store: self.store)
        var config = APIConfiguration()
        config.apiToken = token
        config.now = { APIFixture.now }
        let ids = Counter()
        config.makeID = { String(format: "t%03d", ids.next()) }
        configure(&config)
        api = OrchestratorAPI(repository: repository, status: status, logs: FakeLogs(logs: logs), configuration: config)
    }

    /// Runs `body` against the router (no network), as HummingbirdTesting's `.router` mode does.
    @discardableResult
    func test<T: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        let app = Application(router: api.buildRouter())
        return try await app.test(.router) { client in try await body(client) }
    }

    /// Stores a node directly (what a worker's join does).
    @discardableResult
    func addNode(_ id: String, cpu: Int = 4000, memory: Int = 8192, state: NodeState = .ready) async throws -> NodeRecord {
        try await repository.save(NodeRecord(info: NodeInfo(id: id, state: state, capacity: Resources(cpu: cpu, memory: memory)),
                                             address: "10.0.0.1:7000", lastHeartbeat: APIFixture.now))
    }

    /// Places a task on a node as the scheduler would.
    @discardableResult
    func place(_ taskID: String, on nodeID: String) async throws -> (TaskRecord, NodeRecord) {
        let task = try await repository.task(taskID)
        let node = try await repository.node(nodeID)
        return try await repository.assign(task, to: node, placement: PlacementRecord(node: nodeID, score: 1, algorithm: .binPacking, filters: []),
                                           now: APIFixture.now)
    }

    /// Every key and value in the store, with the revision: equal before and after means untouched.
    func snapshot() async throws -> (revision: Int64, kvs: [KeyValue]) {
        let r = try await store.range(RangeRequest(key: [0], rangeEnd: [0]), consistency: .serializable)
        return (r.revision, r.kvs)
    }
}

/// The README's task, verbatim.
let readmeTaskBody = """
    {
        "name": "test-task",
        "image": "alpine",
        "command": ["echo", "hello world"],
        "resources": {
          "cpu": 500,
          "memory": 256
        }
      }
    """

extension TestClientProtocol {
    @discardableResult
    /// A well-behaved client: a body goes as JSON unless `headers` say otherwise (see
    /// `sendRaw` for a body without any Content-Type).
    func send(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
        var headers = headers
        if body != nil, headers[.contentType] == nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    /// Exactly these headers and body.
    @discardableResult
    func sendRaw(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    @discardableResult
    /// POSTs a task and returns its id (fails the test on anything but 201).
    func createTask(_ json: String = readmeTaskBody, headers: HTTPFields = [:]) async throws -> String {
        let r = try await send(.post, "/api/v1/tasks", body: json, headers: headers)
        #expect(r.status == .created, "\(String(buffer: r.body))")
        return try #require(r.json["id"] as? String)
    }
}

extension TestResponse {
    /// The body parsed as a JSON object ([:] if it is not one).
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8))) as? [String: Any] ?? [:]
    }

    var text: String { String(buffer: body) }

    /// The error code of an error body.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }

    func header(_ name: String) -> String? { headers[HTTPFields.Element.Name(name)!] }
}
