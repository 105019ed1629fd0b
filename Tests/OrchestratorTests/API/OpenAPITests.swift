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
            #expect(doc["openapi"] as? String == "3.1.0")
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
                // 501 not_supported: the test server has no store to back up (a handler's answer, not routing).
                #expect(r.status.code < 500 || uri == "/readyz" || r.errorCode == "not_supported", "\(operation): \(r.status)")
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
                      "Alpine", "alpine:", "a b", "/alpine", "alpine/", "-alpine", "alpine:-x", "alpine@sha256:xyz", "team//web",
                      // Delimiters followed by a combining mark or an emoji modifier: one Swift
                      // Character each, but the pattern (and schemathesis) read code points.
                      "\u{A2}{:\u{1F3FB}\u{BD}\u{11}/v/qad-_y/b@sha256:" + String(repeating: "b", count: 64),
                      "reg.\u{301}x/app", "alpine:\u{301}", "alpine@\u{301}sha256:" + String(repeating: "a", count: 64),
                      "a/\u{301}b", "a\u{1F3FB}"]
        for image in images {
            let documented = regex.firstMatch(in: image, range: NSRange(image.startIndex..., in: image)) != nil
            let accepted = (try? TaskSpecParser.validateImage(image)) != nil
            #expect(documented == accepted, "\(image): pattern \(documented), parser \(accepted)")
        }
    }
}

/// Checks a JSON value against a schema of the document (OpenAPI 3.1, JSON Schema 2020-12):
/// types (one, or a list with "null"), enums, required and declared properties (closed objects),
/// $ref, allOf and anyOf; enough for the API's own schemas.
struct SchemaCheck {
    let schemas: [String: [String: Any]]

    init(_ document: [String: Any]) {
        schemas = ((document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]]) ?? [:]
    }

    /// The faults, each with its path; empty when `value` conforms.
    func faults(_ value: Any, _ schema: [String: Any], at path: String = "$") -> [String] {
        if let ref = schema["$ref"] as? String {
            return faults(value, schemas[String(ref.split(separator: "/").last!)] ?? [:], at: path)
        }
        var out: [String] = []
        for part in schema["allOf"] as? [[String: Any]] ?? [] { out += faults(value, part, at: path) }
        if let alternatives = schema["anyOf"] as? [[String: Any]],
           !alternatives.contains(where: { faults(value, $0, at: path).isEmpty }) {
            out.append("\(path): matches none of anyOf")
        }
        let types = (schema["type"] as? [String]) ?? (schema["type"] as? String).map { [$0] } ?? []
        if value is NSNull {
            return types.isEmpty || types.contains("null") ? out : out + ["\(path): null"]
        }
        if let values = schema["enum"] as? [Any], !values.contains(where: { ($0 as? NSObject)?.isEqual(value) == true }) {
            out.append("\(path): \(value) not in the enum")
        }
        switch types.first(where: { $0 != "null" }) {
        case "string": if !(value is String) { out.append("\(path): not a string") }
        case "boolean": if !((value as? NSNumber).map { !isNumberNotBool($0) } ?? false) { out.append("\(path): not a boolean") }
        case "integer", "number":
            guard let n = value as? NSNumber, isNumberNotBool(n) else { out.append("\(path): not a number"); break }
            if types.contains("integer"), n.doubleValue.rounded() != n.doubleValue { out.append("\(path): not an integer") }
        case "array":
            guard let items = value as? [Any] else { out.append("\(path): not an array"); break }
            for (i, item) in items.enumerated() { out += faults(item, schema["items"] as? [String: Any] ?? [:], at: "\(path)[\(i)]") }
        case "object":
            guard let object = value as? [String: Any] else { out.append("\(path): not an object"); break }
            let properties = schema["properties"] as? [String: [String: Any]]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil { out.append("\(path): missing \(key)") }
            for (key, item) in object {
                if let property = properties?[key] {
                    out += faults(item, property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    out += faults(item, additional, at: "\(path).\(key)")
                } else if properties != nil {
                    out.append("\(path): undocumented \(key)")
                }
            }
        default: break
        }
        return out
    }
}

@Suite struct EventSchemaTests {
    @Test("every SSE message's data matches the schema the document gives for its event")
    func eventPayloadsMatchSchemas() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument().json)) as? [String: Any])
        let check = SchemaCheck(document)
        let stream = try #require(((((document["paths"] as? [String: Any])?["/api/v1/events"] as? [String: Any])?["get"]
            as? [String: Any])?["responses"] as? [String: Any])?["200"] as? [String: Any])
        let eventSchemas = try #require(stream["x-event-schemas"] as? [String: [String: Any]])

        var task = TaskRecord(id: "t1", spec: TaskSpec(name: "n", image: "alpine", env: ["A": "b"], scheduler: .spread), now: 5)
        task.state = .running
        task.node = "n1"
        task.exitCode = 0
        task.notBefore = 1
        task.runtimeStartMs = 3
        task.moving = "draining"
        task.placement = PlacementRecord(node: "n1", score: 0.5, algorithm: .spread, filters: [FilterOutcome(filter: "resources", removed: 1)])
        task.revision = 9
        var node = NodeRecord(info: NodeInfo(id: "n1", state: .ready, labels: ["zone": "a"], capacity: Resources(cpu: 1000, memory: 1000)),
                              address: "127.0.0.1:1", lastHeartbeat: 4)
        node.revision = 9
        let events: [ClusterEvent] = [
            ClusterEvent(type: .taskRunning, revision: 9, subject: .task(task), previousState: "assigned"),
            ClusterEvent(type: .taskDeleted, revision: 9, subject: .removed(id: "t1"), previousState: "completed"),
            ClusterEvent(type: .nodeReady, revision: 9, subject: .node(node), previousState: "not_ready"),
            ClusterEvent(type: .nodeRemoved, revision: 9, subject: .removed(id: "n1")),
            ClusterEvent(type: .leaderElected, revision: 9, subject: .leader(LeaderRecord(id: "m1", term: 2))),
        ]
        var messages: [(event: String, data: [UInt8])] = events.map { ($0.type.rawValue, APIJSON.encode(ClusterEventView(event: $0))) }
        messages.append(("error", APIError(status: 410, code: "compacted", message: "gone").jsonBody))
        messages.append(("shutdown", APIJSON.encode(["reason": "stopping"])))
        for type in ClusterEventType.allCases { #expect(eventSchemas[type.rawValue] != nil, "\(type.rawValue) has no schema") }
        for (event, data) in messages {
            let schema = try #require(eventSchemas[event], "\(event) has no schema")
            let value = try JSONSerialization.jsonObject(with: Data(data))
            let faults = check.faults(value, schema)
            #expect(faults.isEmpty, "\(event): \(faults) in \(String(decoding: data, as: UTF8.self))")
        }
    }
}
