import Hummingbird
import HummingbirdTesting
import Testing
@testable import Orchestrator

@Suite struct AuthTests {
    @Test("with a token, every route but the health probes needs the bearer token")
    func tokenRequired() async throws {
        let f = APIFixture(token: "s3cret")
        try await f.test { client in
            let good: HTTPFields = [.authorization: "Bearer s3cret"]
            for route in Route.allCases {
                let path = route.path.replacingOccurrences(of: "{id}", with: "x")
                let r = try await client.send(route.method, path)
                if route.needsAuth {
                    #expect(r.status == .unauthorized, "\(route) -> \(r.status)")
                    #expect(r.errorCode == "unauthorized")
                    #expect(r.header("WWW-Authenticate") == "Bearer")
                } else {
                    #expect(r.status != .unauthorized, "\(route) is a health probe")
                }
            }
            for wrong in ["Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "Basic czNjcmV0", "s3cret", "Bearer "] {
                let r = try await client.send(.get, "/api/v1/tasks", headers: [.authorization: wrong])
                #expect(r.status == .unauthorized, "\(wrong)")
            }
            #expect(try await client.send(.get, "/api/v1/tasks", headers: good).status == .ok)
            #expect(try await client.createTask(headers: good) == "t001")
            // Unknown paths answer 401 too: nothing is revealed without the token.
            #expect(try await client.send(.get, "/nothing/here").status == .unauthorized)
            #expect(try await client.send(.get, "/nothing/here", headers: good).status == .notFound)
            // An unauthorized write changes nothing.
            let before = try await f.snapshot()
            #expect(try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody).status == .unauthorized)
            #expect(try await f.snapshot().revision == before.revision)
        }
    }

    @Test("without a token the API is open")
    func open() async throws {
        let f = APIFixture(token: nil)
        let status = try await f.test { client in try await client.send(.get, "/api/v1/tasks").status }
        #expect(status == .ok)
    }

    @Test("constant-time comparison and the open-API warning")
    func helpers() {
        #expect(APIAuth.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!APIAuth.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!APIAuth.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!APIAuth.constantTimeEquals([], Array("a".utf8)))
        #expect(APIAuth.constantTimeEquals([], []))

        #expect(APIAuth.shouldWarnOpenAPI(token: nil, bindHost: "0.0.0.0"))
        #expect(APIAuth.shouldWarnOpenAPI(token: "", bindHost: "192.168.1.5"))
        #expect(APIAuth.shouldWarnOpenAPI(token: nil, bindHost: "::"))
        #expect(!APIAuth.shouldWarnOpenAPI(token: nil, bindHost: "127.0.0.1"))
        #expect(!APIAuth.shouldWarnOpenAPI(token: nil, bindHost: "localhost"))
        #expect(!APIAuth.shouldWarnOpenAPI(token: nil, bindHost: "[::1]"))
        #expect(!APIAuth.shouldWarnOpenAPI(token: "t", bindHost: "0.0.0.0"))
    }
}
