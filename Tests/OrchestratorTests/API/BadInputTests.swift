import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

@Suite struct BadInputTests {
    static let badTasks: [(body: String, status: Int, code: String, mentions: String)] = [
        ("{", 400, "invalid_json", "JSON"),
        ("", 400, "invalid_json", "JSON"),
        ("[]", 400, "invalid_json", "object"),
        (#"{"name":"t"}"#, 400, "missing_field", "image"),
        (#"{"name":"t","image":""}"#, 400, "invalid_field", "image"),
        (#"{"name":7,"image":"alpine"}"#, 400, "invalid_field", "name"),
        (#"{"name":"t","image":"alpine","command":"echo"}"#, 400, "invalid_field", "command"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":-5}}"#, 400, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"memory":0}}"#, 400, "invalid_field", "resources.memory"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":99999999}}"#, 400, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":"lots"}}"#, 400, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":true}}"#, 400, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","scheduler":"fastest"}"#, 400, "invalid_field", "scheduler"),
        (#"{"name":"t","image":"alpine","colour":"red"}"#, 400, "invalid_field", "colour"),
        (#"{"name":"t","image":"alpine","restart_policy":{"condition":"sometimes"}}"#, 400, "invalid_field", "restart_policy.condition"),
    ]

    @Test("every bad task body is a 4xx naming the field, and the store is unchanged")
    func badTaskBodies() async throws {
        let f = APIFixture()
        try await f.test { client in
            try await client.createTask()
            let before = try await f.snapshot()
            for bad in Self.badTasks {
                let r = try await client.send(.post, "/api/v1/tasks", body: bad.body)
                #expect(Int(r.status.code) == bad.status, "\(bad.body) -> \(r.status)")
                #expect(r.errorCode == bad.code, "\(bad.body) -> \(r.text)")
                #expect(r.errorMessage?.contains(bad.mentions) == true, "\(bad.body) -> \(r.text)")
                #expect(r.header("Content-Type")?.hasPrefix("application/json") == true)
            }
            let after = try await f.snapshot()
            #expect(after.revision == before.revision)
            #expect(after.kvs == before.kvs)
        }
    }

    @Test("bodies over 1 MiB get 413 with our error body, announced or not")
    func oversized() async throws {
        let f = APIFixture()
        try await f.test { client in
            let before = try await f.snapshot()
            let big = #"{"name":"t","image":"alpine","env":{"A":""# + String(repeating: "x", count: 1 << 20) + #""}}"#
            let r = try await client.send(.post, "/api/v1/tasks", body: big)
            #expect(r.status == .contentTooLarge)
            #expect(r.errorCode == "body_too_large")
            // Lying about the length does not help: the limit holds while reading too.
            let lying = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: [.contentType: "application/json"],
                                                 body: ByteBuffer(string: big))
            #expect(lying.status == .contentTooLarge)
            #expect(try await f.snapshot().revision == before.revision)
        }
    }

    @Test("bad query parameters are 400s naming the parameter")
    func badQueries() async throws {
        let f = APIFixture()
        try await f.test { client in
            let cases: [(String, String)] = [
                ("/api/v1/tasks?state=sleeping", "state"),
                ("/api/v1/tasks?limit=0", "limit"),
                ("/api/v1/tasks?limit=abc", "limit"),
                ("/api/v1/tasks?limit=1000000", "limit"),
                ("/api/v1/tasks?node=", "node"),
                ("/api/v1/tasks?consistent=maybe", "consistent"),
                ("/api/v1/nodes?consistent=", "consistent"),
                ("/api/v1/tasks?consistent=1", "consistent"),
                ("/api/v1/nodes?min_revision=x", "min_revision"),
                ("/api/v1/events?type=task_exploded", "type"),
                ("/api/v1/events?since=yesterday", "since"),
            ]
            for (uri, field) in cases {
                let r = try await client.send(.get, uri)
                #expect(r.status == .badRequest, "\(uri) -> \(r.status)")
                #expect(r.errorCode == "invalid_field", "\(uri) -> \(r.text)")
                #expect(r.errorMessage?.hasPrefix(field) == true, "\(uri) -> \(r.text)")
            }
            let r = try await client.send(.get, "/api/v1/events", headers: [.lastEventID: "abc"])
            #expect(r.errorMessage?.hasPrefix("Last-Event-ID") == true)
        }
    }

    @Test("unknown routes are 404 and wrong methods 405, both with the error body")
    func unknownRoutes() async throws {
        let f = APIFixture()
        try await f.test { client in
            let r = try await client.send(.get, "/api/v2/everything")
            #expect(r.status == .notFound)
            #expect(r.errorCode == "route_not_found")
            let m = try await client.send(.put, "/api/v1/tasks")
            #expect(m.status == .methodNotAllowed)
            #expect(m.errorCode == "method_not_allowed")
            #expect(m.header("Allow") == "POST, GET")
            let d = try await client.send(.put, "/api/v1/nodes/n1")
            #expect(d.status == .methodNotAllowed)
            #expect(d.header("Allow") == "GET, DELETE")
            #expect(try await client.send(.get, "/api/v1/nodes/n1/drain").status == .methodNotAllowed)
        }
    }

    @Test("a store that fails answers 503 store_unavailable; a write held past the timeout 503 no_leader")
    func unavailable() async throws {
        let failing = APIFixture(store: UnavailableStore(mode: .fail))
        try await failing.test { client in
            let r = try await client.send(.get, "/api/v1/tasks")
            #expect(r.status == .serviceUnavailable)
            #expect(r.errorCode == "store_unavailable")
            let w = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody)
            #expect(w.status == .serviceUnavailable)
            // Liveness does not depend on the store.
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }

        let hanging = APIFixture(store: UnavailableStore(mode: .hang)) { $0.requestTimeout = .milliseconds(150) }
        hanging.status.set { $0.leaderID = nil; $0.isReady = false }
        try await hanging.test { client in
            let started = ContinuousClock.now
            let r = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody)
            #expect(r.status == .serviceUnavailable)
            #expect(r.errorCode == "no_leader")
            #expect(r.errorMessage?.contains("may or may not") == true)
            // A task submission is told how to retry safely.
            #expect(r.errorMessage?.contains("Idempotency-Key") == true)
            // The timeout is 150 ms; the bound leaves room for a busy test process (the suites
            // starting together hold the pool for seconds) and is still far below the hang.
            #expect(ContinuousClock.now - started < .seconds(60))
            #expect(r.header("X-Orchestrator-Leader") == nil)
        }
        hanging.status.set { $0.leaderID = "m2" }
        let code = try await hanging.test { client in try await client.send(.get, "/api/v1/nodes").errorCode }
        #expect(code == "store_timeout")
    }
}

/// A store that is down: every call fails (`.fail`) or never answers, ignoring cancellation as a
/// write held through an election might (`.hang`).
struct UnavailableStore: ClusterStore {
    enum Mode { case fail, hang }
    let mode: Mode

    struct Down: Error, CustomStringConvertible {
        var description: String { "connection refused" }
    }

    func unavailable<T>() async throws -> T {
        if mode == .hang {
            // An unstructured task does not inherit the caller's cancellation: this stands for a
            // request stuck in a consensus layer that does not give up when asked.
            // Far longer than the test's bound below, so that an answer that waited for the store
            // cannot pass for one given at the request timeout, however slow the machine.
            _ = await Task { try? await Task.sleep(for: .seconds(180)) }.value
        }
        throw Down()
    }

    func range(_ r: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse { try await unavailable() }
    func put(_ r: PutRequest) async throws -> PutResponse { try await unavailable() }
    func deleteRange(_ r: DeleteRangeRequest) async throws -> DeleteRangeResponse { try await unavailable() }
    func txn(_ r: TxnRequest) async throws -> TxnResponse { try await unavailable() }
    func compact(revision: Int64) async throws { try await unavailable() as Void }
    func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant { try await unavailable() }
    func keepAlive(_ id: LeaseID) async throws -> LeaseGrant { try await unavailable() }
    func revokeLease(_ id: LeaseID) async throws { try await unavailable() as Void }
    func timeToLive(_ id: LeaseID) async throws -> LeaseStatus { try await unavailable() }
    func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        AsyncThrowingStream { $0.finish(throwing: Down()) }
    }
}
