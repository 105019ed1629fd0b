import ClusterModel
import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

@Suite struct TaskRoutesTests {
    @Test("the README's curl examples work verbatim: POST the task, list tasks, list nodes")
    func readmeExamples() async throws {
        let f = APIFixture()
        try await f.test { client in
            // curl -X POST … -H "Content-Type: application/json" -d '<body>'
            let created = try await client.send(.post, "/api/v1/tasks", body: readmeTaskBody, headers: [.contentType: "application/json"])
            #expect(created.status == .created)
            let task = created.json
            #expect(task["id"] as? String == "t001")
            #expect(task["state"] as? String == "pending")
            let spec = try #require(task["spec"] as? [String: Any])
            #expect(spec["name"] as? String == "test-task")
            #expect(spec["command"] as? [String] == ["echo", "hello world"])
            #expect(spec["resources"] as? [String: Int] == ["cpu": 500, "memory": 256])
            #expect(created.header("Location") == "/api/v1/tasks/t001")
            #expect(created.header("X-Orchestrator-Index") == String(task["revision"] as! Int))
            #expect(created.header("X-Orchestrator-Leader") == "m1")

            // A body must be declared JSON (a cross-site form could send the others): curl -d
            // without -H sends form encoding, and no Content-Type at all is refused too.
            let compact = #"{"name":"t","image":"alpine","command":["echo","hi"],"resources":{"cpu":500,"memory":256}}"#
            let form = try await client.sendRaw(.post, "/api/v1/tasks", body: compact,
                                                headers: [.contentType: "application/x-www-form-urlencoded"])
            #expect(form.status == .unsupportedMediaType)
            #expect(form.errorMessage?.contains("Content-Type: application/json") == true)
            #expect(try await client.sendRaw(.post, "/api/v1/tasks", body: compact).status == .unsupportedMediaType)
            let bare = try await client.send(.post, "/api/v1/tasks", body: compact,
                                             headers: [.contentType: "Application/JSON; charset=utf-8"])
            #expect(bare.status == .created)

            let list = try await client.send(.get, "/api/v1/tasks")
            #expect(list.status == .ok)
            let tasks = try #require(list.json["tasks"] as? [[String: Any]])
            #expect(tasks.map { $0["id"] as? String } == ["t001", "t002"])
            #expect(list.json["continue"] == nil)

            let nodes = try await client.send(.get, "/api/v1/nodes")
            #expect(nodes.status == .ok)
            #expect((nodes.json["nodes"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("unspecified resources default to cpu 1000 and memory 512; the stored task is what GET returns")
    func defaultsAndGet() async throws {
        let f = APIFixture()
        try await f.test { client in
            let id = try await client.createTask(#"{"name":"n","image":"busybox:1.36"}"#)
            let stored = try await f.repository.task(id)
            #expect(stored.spec.resources == Resources(cpu: 1000, memory: 512))
            #expect(stored.createdAt == APIFixture.now)
            let got = try await client.send(.get, "/api/v1/tasks/\(id)")
            #expect(got.status == .ok)
            #expect((got.json["spec"] as? [String: Any])?["resources"] as? [String: Int] == ["cpu": 1000, "memory": 512])
            #expect(got.json["revision"] as? Int == Int(stored.revision))
            #expect(got.json["created_at"] as? Int == Int(APIFixture.now))
            #expect(got.header("X-Orchestrator-Index").flatMap { Int64($0) }.map { $0 >= stored.revision } == true)

            let consistent = try await client.send(.get, "/api/v1/tasks/\(id)?consistent=true")
            #expect(consistent.status == .ok)
            #expect(try await client.send(.get, "/api/v1/tasks/nope").errorCode == "not_found")
            #expect(try await client.send(.get, "/api/v1/tasks/nope").status == .notFound)
        }
    }

    @Test("list filters by state and node")
    func listFilters() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.addNode("n2")
        try await f.test { client in
            for _ in 0..<5 { try await client.createTask() }
            try await f.place("t001", on: "n1")
            try await f.place("t002", on: "n2")
            try await f.place("t003", on: "n1")

            func ids(_ query: String) async throws -> [String] {
                let r = try await client.send(.get, "/api/v1/tasks\(query)")
                #expect(r.status == .ok, "\(r.text)")
                return (r.json["tasks"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(try await ids("?state=pending") == ["t004", "t005"])
            #expect(try await ids("?state=assigned") == ["t001", "t002", "t003"])
            #expect(try await ids("?node=n1") == ["t001", "t003"])
            #expect(try await ids("?state=assigned&node=n2") == ["t002"])
            #expect(try await ids("?state=pending,assigned") == ["t001", "t002", "t003", "t004", "t005"])
            #expect(try await ids("?state=running").isEmpty)
            #expect(try await ids("?node=n9").isEmpty)
        }
    }

    @Test("cancel: pending becomes cancelled; assigned releases the node's allocation; ended tasks are returned unchanged")
    func cancel() async throws {
        let f = APIFixture()
        try await f.addNode("n1", cpu: 2000, memory: 2048)
        try await f.test { client in
            let pending = try await client.createTask()
            let placed = try await client.createTask()
            try await f.place(placed, on: "n1")
            #expect(try await f.repository.node("n1").info.allocated == Resources(cpu: 500, memory: 256))

            let r1 = try await client.send(.delete, "/api/v1/tasks/\(pending)")
            #expect(r1.status == .ok)
            #expect(r1.json["state"] as? String == "cancelled")
            #expect(try await f.repository.task(pending).state == .cancelled)

            let r2 = try await client.send(.delete, "/api/v1/tasks/\(placed)")
            #expect(r2.status == .ok)
            #expect(r2.json["state"] as? String == "cancelled")
            #expect(r2.json["node"] as? String == "n1", "kept: where it ran, for its logs")
            let node = try await f.repository.node("n1")
            #expect(node.info.allocated == .zero)
            #expect(node.info.taskCount == 0)

            // Again: idempotent, nothing written.
            let before = try await f.snapshot()
            let r3 = try await client.send(.delete, "/api/v1/tasks/\(placed)")
            #expect(r3.status == .ok)
            #expect(r3.json["state"] as? String == "cancelled")
            #expect(try await f.snapshot().revision == before.revision)

            // A running task is cancelled too; a completed one is left alone.
            let running = try await client.createTask()
            var (t, _) = try await f.place(running, on: "n1")
            t.state = .running
            t = try await f.repository.update(t)
            #expect(try await client.send(.delete, "/api/v1/tasks/\(running)").json["state"] as? String == "cancelled")
            #expect(try await f.repository.node("n1").info.allocated == .zero)

            let done = try await client.createTask()
            var (d, n) = try await f.place(done, on: "n1")
            var finished = d
            finished.state = .completed
            (d, n) = try await f.repository.release(d, as: finished, from: n)
            let r4 = try await client.send(.delete, "/api/v1/tasks/\(done)")
            #expect(r4.status == .ok)
            #expect(r4.json["state"] as? String == "completed")

            #expect(try await client.send(.delete, "/api/v1/tasks/missing").status == .notFound)
        }
    }

    @Test("logs: text from the worker; 404 unknown task; 409 never placed; 502 when the worker fails")
    func logs() async throws {
        let f = APIFixture(logs: ["t001": "hello world\n"])
        try await f.addNode("n1")
        try await f.test { client in
            let placed = try await client.createTask()
            let unplaced = try await client.createTask()
            let unreachable = try await client.createTask()
            try await f.place(placed, on: "n1")
            try await f.place(unreachable, on: "n1")

            let r = try await client.send(.get, "/api/v1/tasks/\(placed)/logs")
            #expect(r.status == .ok)
            #expect(r.text == "hello world\n")
            #expect(r.header("Content-Type")?.hasPrefix("text/plain") == true)
            #expect(try await client.send(.get, "/api/v1/tasks/\(placed)/logs?limit_bytes=6").text == "world\n")

            #expect(try await client.send(.get, "/api/v1/tasks/nope/logs").status == .notFound)
            let never = try await client.send(.get, "/api/v1/tasks/\(unplaced)/logs")
            #expect(never.status == .conflict)
            #expect(never.errorCode == "not_placed")
            let failed = try await client.send(.get, "/api/v1/tasks/\(unreachable)/logs")
            #expect(failed.status == .badGateway)
            #expect(failed.errorCode == "logs_unavailable")
            #expect(try await client.send(.get, "/api/v1/tasks/\(placed)/logs?limit_bytes=0").errorCode == "invalid_field")
        }
    }

    @Test("min_revision waits for a revision the cluster has (504 past the bound); one beyond it is 400 at once")
    func minRevision() async throws {
        let f = APIFixture { $0.minRevisionTimeout = .milliseconds(300) }
        try await f.test { client in
            let id = try await client.createTask()
            let revision = try await f.repository.task(id).revision
            let ok = try await client.send(.get, "/api/v1/tasks/\(id)?min_revision=\(revision)")
            #expect(ok.status == .ok)
            // Beyond the cluster's revision: refused, naming the current revision (400, where a wait
            // past the 300 ms bound would have answered 504: the status is the proof it did not wait).
            let future = try await client.send(.get, "/api/v1/tasks/\(id)?min_revision=\(revision + 100)")
            #expect(future.status == .badRequest)
            #expect(future.errorCode == "future_revision")
            #expect(future.errorMessage?.contains("current revision \(revision)") == true)
            let huge = try await client.send(.get, "/api/v1/nodes?min_revision=\(Int64.max)")
            #expect(huge.errorCode == "future_revision")
            // A revision the cluster has but this master has not applied: 504 after the bound.
            f.status.appliedCap.withLock { $0 = revision - 1 }
            let late = try await client.send(.get, "/api/v1/tasks/\(id)?min_revision=\(revision)")
            #expect(late.status == .gatewayTimeout)
            #expect(late.errorCode == "revision_timeout")
            #expect(try await client.send(.get, "/api/v1/tasks?min_revision=-1").errorCode == "invalid_field")
        }
    }
}
