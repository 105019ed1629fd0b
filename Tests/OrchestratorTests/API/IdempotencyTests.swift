import ClusterModel
import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

/// `POST /api/v1/tasks` with `Idempotency-Key`: a retry returns the task of the first attempt.
@Suite struct IdempotencyTests {
    static let key = HTTPFields.Element.Name("Idempotency-Key")!

    @Test("the same key and body twice: one task; the second answer is the first's task with Idempotent-Replayed")
    func replay() async throws {
        let f = APIFixture()
        try await f.test { client in
            let first = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [Self.key: "submit-42"])
            #expect(first.status == .created)
            #expect(first.header("Idempotent-Replayed") == nil)
            let id = try #require(first.json["id"] as? String)
            let second = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [Self.key: "submit-42"])
            #expect(second.status == .created)
            #expect(second.json["id"] as? String == id)
            #expect(second.header("Idempotent-Replayed") == "true")
            #expect(second.header("Location") == "/api/v1/tasks/\(id)")
            let list = try await client.send(.get, "/api/v1/tasks")
            #expect((list.json["tasks"] as? [[String: Any]])?.count == 1)
            // Another key is another task; no key is always a new task.
            let other = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [Self.key: "submit-43"])
            #expect(other.status == .created && other.json["id"] as? String != id)
            _ = try await client.createTask()
            let all = try await client.send(.get, "/api/v1/tasks")
            #expect((all.json["tasks"] as? [[String: Any]])?.count == 3)
        }
    }

    @Test("the key with a different body is 422 idempotency_key_reused and creates nothing")
    func reusedWithAnotherBody() async throws {
        let f = APIFixture()
        try await f.test { client in
            _ = try await client.createTask(headers: [Self.key: "k1"])
            let before = try await f.snapshot()
            let other = readmeTaskBody.replacingOccurrences(of: "test-task", with: "other-task")
            let r = try await client.send(.post, "/api/v1/tasks", body: other, headers: [Self.key: "k1"])
            #expect(r.status == .unprocessableContent)
            #expect(r.errorCode == "idempotency_key_reused")
            #expect(try await f.snapshot().revision == before.revision)
        }
    }

    @Test("malformed keys are 400 and create nothing", arguments: ["", String(repeating: "k", count: 256), "with space", "café"])
    func malformedKeys(key: String) async throws {
        let f = APIFixture()
        try await f.test { client in
            let before = try await f.snapshot()
            let r = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [Self.key: key])
            #expect(r.status == .badRequest)
            #expect(r.errorMessage?.contains("Idempotency-Key") == true)
            #expect(try await f.snapshot().revision == before.revision)
        }
    }

    @Test("the record lives on the hour's lease of 25 h; a lease another master granted is reused")
    func retention() async throws {
        let f = APIFixture()
        let lease = ClusterRepository.idempotencyLease(at: APIFixture.now)
        // Another master granted this hour's lease already: the request must use it, not fail.
        _ = try await f.store.grantLease(ttl: ClusterRepository.idempotencyLeaseTTL, id: lease)
        try await f.test { client in
            _ = try await client.createTask(headers: [Self.key: "kept"])
        }
        let records = try await f.store.range(RangeRequest(key: ClusterRepository.idempotencyPrefix,
                                                           rangeEnd: Array(ClusterRepository.idempotencyPrefix.dropLast()) + [UInt8(ascii: "/") + 1]),
                                              consistency: .serializable)
        #expect(records.kvs.count == 1)
        #expect(records.kvs.first?.lease == lease)
        #expect(try await f.store.keepAlive(lease).ttl >= 24 * 3600)
        // An hour later, another lease.
        #expect(ClusterRepository.idempotencyLease(at: APIFixture.now + 3_600_000) != lease)
    }

    @Test("the first idempotent request of an hour grants the hour's lease itself")
    func grantsTheLease() async throws {
        let f = APIFixture()
        try await f.test { client in
            _ = try await client.createTask(headers: [Self.key: "first-of-the-hour"])
        }
        let lease = ClusterRepository.idempotencyLease(at: APIFixture.now)
        #expect(try await f.store.keepAlive(lease).ttl == ClusterRepository.idempotencyLeaseTTL)
    }
}
