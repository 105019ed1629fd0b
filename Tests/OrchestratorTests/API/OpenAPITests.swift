import ClusterModel
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import Orchestrator

@Suite struct OpenAPITests {
    /// The served document, parsed.
    func served(_ client: any TestClientProtocol) async throws -> [String: Any] {
        let r = try await client.send(.get, "/api/v1/openapi.json")
        #expect(r.status == .ok)
        #expect(r.header("Content-Type") == "application/json")
        return r.json
    }

    static let methods = ["get", "post", "put", "delete", "patch", "head", "options"]

    @Test("the document's operations are exactly the router's routes, and each reaches a handler")
    func routesMatch() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.test { client in
            let doc = try await served(client)
            #expect(doc["openapi"] as? String == "3.0.3")
            let paths = try #require(doc["paths"] as? [String: [String: Any]])
            var documented = Set<String>()
            for (path, item) in paths {
                for method in item.keys {
                    #expect(Self.methods.contains(method), "\(path): \(method)")
                    documented.insert("\(method.uppercased()) \(path)")
                }
            }
            let routed = Set(Route.allCases.map { "\($0.method.rawValue) \($0.path)" })
            #expect(documented == routed, "only documented: \(documented.subtracting(routed)); only routed: \(routed.subtracting(documented))")

            // Each documented operation, sent to the router, is handled (no 404/405 from routing).
            let id = try await client.createTask()
            for operation in documented.sorted() {
                let parts = operation.split(separator: " ")
                var uri = String(parts[1]).replacingOccurrences(of: "{id}", with: parts[1].contains("nodes") ? "n1" : id)
                // The event stream would never end: a bad filter makes it answer at once, from its handler.
                if uri == "/api/v1/events" { uri += "?type=bogus" }
                let r = try await client.send(HTTPRequest.Method(String(parts[0]))!, uri)
                #expect(r.errorCode != "route_not_found" && r.errorCode != "method_not_allowed", "\(operation): \(r.text)")
                #expect(r.status.code < 500 || uri == "/readyz", "\(operation): \(r.status)")
            }
        }
    }

    @Test("operation ids are unique and every $ref resolves")
    func wellFormed() throws {
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument(configuration: { var c = APIConfiguration(); c.apiToken = "t"; return c }()).json)) as? [String: Any])
        let schemas = try #require((doc["components"] as? [String: Any])?["schemas"] as? [String: Any])
        var ids: [String] = []
        var refs: [String] = []
        func walk(_ value: Any) {
            if let o = value as? [String: Any] {
                if let id = o["operationId"] as? String { ids.append(id) }
                if let ref = o["$ref"] as? String { refs.append(ref) }
                o.values.forEach(walk)
            } else if let a = value as? [Any] {
                a.forEach(walk)
            }
        }
        walk(doc)
        #expect(ids.count == Route.allCases.count)
        #expect(Set(ids).count == ids.count)
        #expect(!refs.isEmpty)
        for ref in refs {
            #expect(ref.hasPrefix("#/components/schemas/"))
            #expect(schemas[String(ref.dropFirst("#/components/schemas/".count))] != nil, "\(ref)")
        }
    }

    @Test("responses carry exactly the properties their schemas declare, and all required ones")
    func schemasMatchResponses() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.test { client in
            let doc = try await served(client)
            let schemas = try #require((doc["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
            func check(_ object: [String: Any], _ schema: String) {
                let s = schemas[schema] ?? [:]
                let properties = Set((s["properties"] as? [String: Any] ?? [:]).keys)
                let required = Set(s["required"] as? [String] ?? [])
                #expect(Set(object.keys).isSubset(of: properties), "\(schema): undocumented \(Set(object.keys).subtracting(properties))")
                #expect(required.isSubset(of: Set(object.keys)), "\(schema): missing \(required.subtracting(object.keys))")
            }
            let id = try await client.createTask(#"{"name":"x","image":"alpine","scheduler":"spread","env":{"A":"b"}}"#)
            var (placed, _) = try await f.place(id, on: "n1")
            // Every optional field set, so a field added to the record but not to the schema shows.
            placed.state = .running
            placed.exitCode = 0
            placed.notBefore = 1
            placed.runtimeStartMs = 12
            try await f.repository.update(placed)
            let task = try await client.send(.get, "/api/v1/tasks/\(id)").json
            #expect(task["runtime_start_ms"] as? Int == 12)
            check(task, "Task")
            check(task["spec"] as? [String: Any] ?? [:], "TaskSpec")
            check(task["placement"] as? [String: Any] ?? [:], "Placement")
            check(try await client.send(.get, "/api/v1/tasks?limit=1").json, "TaskList")
            check(try await client.send(.get, "/api/v1/nodes/n1").json, "Node")
            check(try await client.send(.get, "/api/v1/nodes").json, "NodeList")
            check(try await client.send(.get, "/api/v1/cluster").json, "Cluster")
            check(try await client.send(.get, "/healthz").json, "Health")
            check(try await client.send(.get, "/api/v1/tasks/nope").json, "Error")
        }
    }

    @Test("security and 401s are declared exactly when a token is configured")
    func securityFollowsToken() throws {
        func parsed(_ token: String?) throws -> [String: Any] {
            var c = APIConfiguration()
            c.apiToken = token
            return try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument(configuration: c).json)) as? [String: Any])
        }
        func responses(_ doc: [String: Any], _ path: String, _ method: String) -> Set<String> {
            let operation = ((doc["paths"] as? [String: Any])?[path] as? [String: Any])?[method] as? [String: Any]
            return Set((operation?["responses"] as? [String: Any] ?? [:]).keys)
        }
        let open = try parsed(nil)
        #expect(open["security"] == nil)
        #expect(!responses(open, "/api/v1/tasks", "get").contains("401"))
        let closed = try parsed("s3cret")
        #expect(closed["security"] != nil)
        #expect(responses(closed, "/api/v1/tasks", "get").contains("401"))
        #expect(!responses(closed, "/healthz", "get").contains("401"))
        #expect(responses(closed, "/api/v1/tasks/{id}", "get").isSuperset(of: ["200", "400", "404", "503", "504"]))
    }

    @Test("the documented image pattern agrees with the parser's image check")
    func imagePattern() throws {
        let regex = try NSRegularExpression(pattern: OpenAPIDocument.imagePattern)
        let images = ["alpine", "alpine:3.19", "library/alpine", "registry.local:5000/team/web:1.2", "localhost/x",
                      "ghcr.io/owner/img@sha256:" + String(repeating: "a", count: 64), "a.b_c-d/e",
                      "Alpine", "alpine:", "a b", "/alpine", "alpine/", "-alpine", "alpine:-x", "alpine@sha256:xyz", "team//web"]
        for image in images {
            let documented = regex.firstMatch(in: image, range: NSRange(image.startIndex..., in: image)) != nil
            let accepted = (try? TaskSpecParser.validateImage(image)) != nil
            #expect(documented == accepted, "\(image): pattern \(documented), parser \(accepted)")
        }
    }
}
