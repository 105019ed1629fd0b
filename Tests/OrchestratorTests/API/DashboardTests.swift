import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import Orchestrator

/// The dashboard's files (`/ui`), their headers, and the CORS answers that let a member's page
/// call this master (issue 18). The page itself is tested in a browser (DashboardBrowserTests).
@Suite struct DashboardTests {
    @Test("/ui, /ui/app.js and /ui/style.css: their types, an ETag, no-cache and a strict CSP; 304 on a matching If-None-Match")
    func files() async throws {
        let fixture = APIFixture(token: nil)
        try await fixture.test { client in
            for (path, type) in [("/ui", "text/html"), ("/ui/", "text/html"), ("/ui/index.html", "text/html"),
                                 ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")] {
                let r = try await client.send(.get, path)
                #expect(r.status == .ok, "\(path)")
                #expect(r.headers[.contentType]?.hasPrefix(type) == true, "\(path): \(r.headers[.contentType] ?? "none")")
                #expect(r.headers[.cacheControl] == "no-cache")
                #expect(r.headers[.xContentTypeOptions] == "nosniff")
                let csp = try #require(r.headers[.contentSecurityPolicy], "\(path)")
                #expect(csp.contains("script-src 'self';"), "\(csp)")
                #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "\(csp)")
                #expect(csp.contains("frame-ancestors 'none'"))
                // The members (FakeStatus: m1 on 8080, m2 on 8081) are where the page may call.
                #expect(csp.contains("connect-src 'self' http://127.0.0.1:8080 http://127.0.0.1:8081;"), "\(csp)")
                let etag = try #require(r.headers[.eTag])
                let again = try await client.send(.get, path, headers: [.ifNoneMatch: etag])
                #expect(again.status == .notModified, "\(path)")
                #expect(again.body.readableBytes == 0)
                #expect(try await client.send(.get, path, headers: [.ifNoneMatch: "\"other\""]).status == .ok)
            }
            let missing = try await client.send(.get, "/ui/secrets.txt")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
        }
    }

    @Test("the page has no inline script or style, and loads only its own files (what the CSP allows)")
    func noInlineCode() async throws {
        let html = DashboardPage.html(tokenRequired: false)
        let scripts = html.components(separatedBy: "<script").dropFirst()
        #expect(scripts.count == 1)
        #expect(scripts.allSatisfy { $0.hasPrefix(" src=\"/ui/app.js\"") }, "every script has a src")
        #expect(!html.contains("style="), "no style attribute")
        #expect(!html.contains("<style"))
        #expect(html.range(of: #" on[a-z]+="#, options: .regularExpression) == nil, "no inline event handler")
        // The script builds elements with textContent only: data never becomes markup.
        let script = DashboardScript.core + DashboardScript.views
        #expect(!script.contains("innerHTML") && !script.contains("outerHTML") && !script.contains("insertAdjacentHTML"))
        #expect(!script.contains("eval("))
    }

    @Test("with --api-token the files need no token (they hold none) and the page is told to ask; the API still needs it")
    func token() async throws {
        let fixture = APIFixture(token: "s3cret")
        try await fixture.test { client in
            let page = try await client.send(.get, "/ui")
            #expect(page.status == .ok)
            #expect(page.text.contains(#"<meta name="orch-token-required" content="true">"#))
            #expect(try await client.send(.get, "/ui/app.js").status == .ok)
            #expect(try await client.send(.get, "/api/v1/tasks").status == .unauthorized)
            // A path beside the dashboard's is not under it.
            #expect(try await client.send(.get, "/uix").status == .unauthorized)
        }
        try await APIFixture(token: nil).test { client in
            let page = try await client.send(.get, "/ui")
            #expect(page.text.contains(#"<meta name="orch-token-required" content="false">"#))
        }
    }

    @Test("a member's page gets CORS answers (preflight, then the call); another site's gets none")
    func cors() async throws {
        for fixture in [APIFixture(token: "s3cret"), CrossSiteTests.devFixture()] {
            let auth: HTTPFields = fixture.api.configuration.apiToken == nil ? [:] : [.authorization: "Bearer s3cret"]
            try await fixture.test { client in
                for origin in ["http://127.0.0.1:8081", "http://localhost:8081"] {
                    let pre = try await client.sendRaw(.options, "/api/v1/tasks", headers: [
                        .origin: origin, .accessControlRequestMethod: "POST", HTTPFields.Element.Name("Access-Control-Request-Headers")!: "authorization,content-type"])
                    #expect(pre.status == .noContent, "\(origin): \(pre.text)")
                    #expect(pre.headers[.accessControlAllowOrigin] == origin)
                    #expect(pre.headers[.accessControlAllowHeaders]?.contains("Authorization") == true)
                    #expect(pre.headers[.accessControlAllowMethods]?.contains("DELETE") == true)
                    var headers = auth
                    headers[.origin] = origin
                    let created = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: headers)
                    #expect(created.status == .created, "\(origin): \(created.text)")
                    #expect(created.headers[.accessControlAllowOrigin] == origin)
                    #expect(created.headers[.accessControlExposeHeaders]?.contains("X-Orchestrator-Index") == true)
                }
                for origin in ["http://127.0.0.1:8082", "http://evil.example", "https://127.0.0.1:8081", "null"] {
                    let pre = try await client.sendRaw(.options, "/api/v1/tasks", headers: [.origin: origin, .accessControlRequestMethod: "POST"])
                    #expect(pre.status != .noContent, "\(origin)")
                    #expect(pre.headers[.accessControlAllowOrigin] == nil, "\(origin)")
                    var headers = auth
                    headers[.origin] = origin
                    let r = try await client.send(.get, "/api/v1/tasks", headers: headers)
                    #expect(r.headers[.accessControlAllowOrigin] == nil, "\(origin)")
                }
            }
        }
    }

    @Test("which origins are the cluster's", arguments: [
        ("http://127.0.0.1:8081", true), ("http://localhost:8081", true), ("http://[::1]:8081", true), ("HTTP://127.0.0.1:8080", true),
        ("http://10.0.0.5:8080", true), ("https://127.0.0.1:8081", false), ("http://127.0.0.1:8082", false),
        ("http://10.0.0.5:8081", false), ("http://evil.example:8081", false), ("http://127.0.0.1", false),
        ("http://user@127.0.0.1:8081", false), ("null", false), ("", false), ("http://127.0.0.1.evil.example:8081", false),
        ("http://127.0.0.2:8081", true), ("http://127.0.0.256:8081", false),
    ])
    func origins(origin: String, allowed: Bool) {
        let origins = ClusterOrigins(memberAddresses: ["127.0.0.1:8080", "127.0.0.1:8081", "10.0.0.5:8080", ""], scheme: "http")
        #expect(origins.allows(origin) == allowed)
    }
}
