import Hummingbird
import HummingbirdTesting
import Testing
@testable import Orchestrator

/// A web page in the developer's browser must not drive a `master --dev` API on 127.0.0.1 (the
/// security review's finding 6: a cross-site `text/plain` POST ran shell commands).
@Suite struct CrossSiteTests {
    /// As `master --dev` sets it up: loopback, no token, port 8080.
    static func devFixture() -> APIFixture {
        APIFixture(token: nil) { $0.crossSiteGuard = CrossSiteGuard(port: 8080) }
    }

    @Test("a cross-site style text/plain POST is refused and creates nothing")
    func textPlainPost() async throws {
        for fixture in [Self.devFixture(), APIFixture(token: nil)] {
            try await fixture.test { client in
                let before = try await fixture.snapshot()
                for type in ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                    let r = try await client.sendRaw(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [.contentType: type])
                    #expect(r.status == .unsupportedMediaType, "\(type)")
                    #expect(r.errorCode == "unsupported_media_type")
                }
                // The other state-changing routes too, even without a body.
                try await fixture.addNode("n1")
                let drain = try await client.sendRaw(.post, "/api/v1/nodes/n1/drain", headers: [.contentType: "text/plain"])
                #expect(drain.status == .unsupportedMediaType)
                let cancel = try await client.sendRaw(.delete, "/api/v1/tasks/t001", body: "x", headers: [.contentType: "text/plain"])
                #expect(cancel.status == .unsupportedMediaType)
                let after = try await fixture.snapshot()
                #expect(after.kvs.filter { String(decoding: $0.key, as: UTF8.self).contains("/tasks/") }.isEmpty)
                #expect(after.revision == before.revision + 1, "only the node was added")
            }
        }
    }

    @Test("a foreign Origin or Host is refused on a loopback API without a token")
    func foreignOrigin() async throws {
        let fixture = Self.devFixture()
        try await fixture.test { client in
            let before = try await fixture.snapshot()
            // (8081 is a member's API, whose dashboard may call this one: see DashboardTests.)
            for origin in ["http://evil.example", "https://localhost:8080", "http://localhost:8082", "null", "http://127.0.0.1.evil.example:8080"] {
                let r = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [.origin: origin])
                #expect(r.status == .forbidden, "\(origin)")
                #expect(r.errorCode == "forbidden_origin")
                #expect(try await client.send(.get, "/api/v1/tasks", headers: [.origin: origin]).status == .forbidden)
            }
            // DNS rebinding: the page's own name, resolved to 127.0.0.1.
            let rebound = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [.hostField: "evil.example:8080"])
            #expect(rebound.status == .forbidden)
            #expect(rebound.errorCode == "forbidden_host")
            #expect(try await fixture.snapshot().revision == before.revision)

            // Its own pages and names are fine.
            for origin in ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"] {
                #expect(try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [.origin: origin]).status == .created)
            }
            #expect(try await client.send(.get, "/api/v1/tasks", headers: [.hostField: "127.0.0.1:8080"]).status == .ok)
        }
    }

    @Test("a normal JSON POST and curl-style requests without Origin work")
    func curlStyle() async throws {
        for fixture in [Self.devFixture(), APIFixture(token: nil)] {
            try await fixture.test { client in
                let created = try await client.sendRaw(.post, "/api/v1/tasks", body: readmeTaskBody,
                                                       headers: [.contentType: "application/json", .hostField: "localhost:8080"])
                #expect(created.status == .created)
                try await fixture.addNode("n1")
                // curl -X POST .../drain: no body, no Content-Type.
                #expect(try await client.sendRaw(.post, "/api/v1/nodes/n1/drain").status == .ok)
                #expect(try await client.sendRaw(.delete, "/api/v1/tasks/t001").status == .ok)
            }
        }
    }

    @Test("without the guard (a token, or a public bind) Origin is the token's business")
    func noGuard() async throws {
        let fixture = APIFixture(token: "s3cret")
        try await fixture.test { client in
            let r = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody,
                                          headers: [.origin: "http://evil.example", .authorization: "Bearer s3cret"])
            #expect(r.status == .created)
            // Unauthenticated: 401 first, revealing nothing about the body rules.
            #expect(try await client.sendRaw(.post, "/api/v1/tasks", body: "x", headers: [.contentType: "text/plain"]).status == .unauthorized)
        }
    }

    @Test("with TLS its own Origin is https")
    func httpsOrigin() {
        let guarded = CrossSiteGuard(port: 8443, scheme: "https")
        #expect(guarded.check(hosts: ["localhost:8443"], origin: "https://localhost:8443") == nil)
        #expect(guarded.check(hosts: ["localhost:8443"], origin: "http://localhost:8443")?.status == 403)
    }

    @Test("the guard's names and ports", arguments: [
        ("localhost:8080", true), ("127.0.0.1:8080", true), ("[::1]:8080", true), ("localhost", true), ("LOCALHOST:8080", true),
        ("localhost:8081", false), ("evil.example:8080", false), ("127.0.0.1.nip.io:8080", false), ("[::1]", true),
        ("localhost:x", false), ("", false),
    ])
    func names(host: String, own: Bool) {
        #expect(CrossSiteGuard(port: 8080).isOwn(host) == own)
    }
}
