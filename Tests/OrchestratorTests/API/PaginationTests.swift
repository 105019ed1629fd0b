import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

@Suite struct PaginationTests {
    /// Follows continue tokens from `first` to the end; returns the ids page by page.
    func pages(_ client: any TestClientProtocol, _ first: String) async throws -> [[String]] {
        var out: [[String]] = []
        var uri = first
        for _ in 0..<100 {
            let r = try await client.send(.get, uri)
            #expect(r.status == .ok, "\(r.text)")
            out.append((r.json["tasks"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String })
            guard let token = r.json["continue"] as? String else { return out }
            uri = first + (first.contains("?") ? "&" : "?") + "continue=\(token)"
        }
        Issue.record("more than 100 pages")
        return out
    }

    @Test("without limit a listing is paged at the default page size, with continue for the rest")
    func defaultPage() async throws {
        let f = APIFixture { $0.defaultPageSize = 3 }
        try await f.test { client in
            for _ in 0..<5 { try await client.createTask() }
            #expect(try await pages(client, "/api/v1/tasks") == [["t001", "t002", "t003"], ["t004", "t005"]])
        }
    }

    @Test("limit and continue walk every task once, in order")
    func walk() async throws {
        let f = APIFixture()
        try await f.test { client in
            for _ in 0..<7 { try await client.createTask() }
            let p = try await pages(client, "/api/v1/tasks?limit=3")
            #expect(p == [["t001", "t002", "t003"], ["t004", "t005", "t006"], ["t007"]])
            // An exact multiple ends without an empty page.
            #expect(try await pages(client, "/api/v1/tasks?limit=7") == [["t001", "t002", "t003", "t004", "t005", "t006", "t007"]])
        }
    }

    @Test("every page of a listing reads the snapshot of the first: later writes do not shift it")
    func snapshot() async throws {
        let f = APIFixture()
        try await f.test { client in
            for _ in 0..<4 { try await client.createTask() }
            let first = try await client.send(.get, "/api/v1/tasks?limit=2")
            let token = try #require(first.json["continue"] as? String)
            let revision = first.json["revision"] as? Int
            // Changes after the first page: a new task, and t003 cancelled.
            try await client.createTask()
            _ = try await client.send(.delete, "/api/v1/tasks/t003")
            let second = try await client.send(.get, "/api/v1/tasks?limit=2&continue=\(token)")
            let tasks = try #require(second.json["tasks"] as? [[String: Any]])
            #expect(tasks.compactMap { $0["id"] as? String } == ["t003", "t004"])
            #expect(tasks.first?["state"] as? String == "pending", "as of the snapshot")
            #expect(second.json["revision"] as? Int == revision)
            #expect(second.json["continue"] == nil)
        }
    }

    @Test("filters apply across pages; a selective filter may end with a short page")
    func filtered() async throws {
        let f = APIFixture()
        try await f.addNode("n1", cpu: 64000, memory: 262144)
        try await f.test { client in
            for _ in 0..<10 { try await client.createTask() }
            for id in ["t002", "t005", "t006", "t009"] { try await f.place(id, on: "n1") }
            let p = try await pages(client, "/api/v1/tasks?state=assigned&limit=2")
            #expect(p.flatMap { $0 } == ["t002", "t005", "t006", "t009"])
            #expect(p.allSatisfy { $0.count <= 2 })
        }
    }

    @Test("bad and expired continue tokens")
    func badTokens() async throws {
        let f = APIFixture()
        try await f.test { client in
            for _ in 0..<3 { try await client.createTask() }
            #expect(try await client.send(.get, "/api/v1/tasks?continue=garbage!").errorCode == "invalid_field")
            // An empty token is the first page.
            #expect((try await client.send(.get, "/api/v1/tasks?limit=2&continue=").json["tasks"] as? [Any])?.count == 2)
            let forged = ContinueToken(revision: 0, after: "x").encoded
            #expect(try await client.send(.get, "/api/v1/tasks?continue=\(forged)").errorCode == "invalid_field")

            let first = try await client.send(.get, "/api/v1/tasks?limit=1")
            let token = try #require(first.json["continue"] as? String)
            for _ in 0..<3 { try await client.createTask() }
            let now = try await f.snapshot().revision
            try await f.store.compact(revision: now)
            let expired = try await client.send(.get, "/api/v1/tasks?limit=1&continue=\(token)")
            #expect(expired.status == .gone)
            #expect(expired.errorCode == "continue_expired")
        }
    }

    @Test("continue tokens round-trip and are URL-safe")
    func tokenFormat() throws {
        let token = ContinueToken(revision: 12345, after: "01hz3x/+=?")
        #expect(!token.encoded.contains(where: { "+/=".contains($0) }))
        #expect(try ContinueToken(decoding: token.encoded) == token)
    }
}
