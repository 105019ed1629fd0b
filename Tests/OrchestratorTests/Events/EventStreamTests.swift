import ClusterModel
import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

@Suite struct EventStreamTests {
    /// An API over a counting store, with fast keepalives so a vanished client is noticed quickly.
    static func fixture(failWatches: StoreError? = nil) -> (APIFixture, CountingStore) {
        let store = CountingStore(failWatches: failWatches)
        let f = APIFixture(store: store) { $0.keepaliveInterval = .milliseconds(20) }
        return (f, store)
    }

    @Test("history then live: ids are revisions, types and data follow the changes")
    func historyAndLive() async throws {
        let (f, store) = Self.fixture()
        try await f.addNode("n1")
        try await f.test { client in
            try await client.createTask()
            try await client.createTask()
        }
        try await f.place("t001", on: "n1")

        let sse = try await SSEClient.open(f.api, "/api/v1/events?since=0")
        #expect(sse.response.headers[.contentType] == "text/event-stream")
        #expect(sse.response.headers[.cacheControl] == "no-cache")
        var got = try await sse.waitFor(4)
        #expect(got.map(\.event) == ["node_joined", "task_created", "task_created", "task_assigned"])
        #expect(got.map(\.id) == ["2", "3", "4", "5"])
        let assigned = try #require(got.last?.data)
        #expect(assigned["type"] as? String == "task_assigned")
        #expect(assigned["revision"] as? Int == 5)
        #expect(assigned["previous_state"] as? String == "pending")
        #expect((assigned["task"] as? [String: Any])?["node"] as? String == "n1")
        #expect((got[0].data["node"] as? [String: Any])?["id"] as? String == "n1")

        // Live: a change made now arrives on the open stream.
        try await f.test { client in
            _ = try await client.send(.delete, "/api/v1/tasks/t001")
            _ = try await client.send(.post, "/api/v1/nodes/n1/drain")
        }
        try await f.store.put(ClusterRepository.leaderKey, Array(#"{"id":"m1","term":5}"#.utf8))
        got = try await sse.waitFor(7)
        #expect(got[4...].map(\.event) == ["task_cancelled", "node_drained", "leader_elected"])
        #expect(got[4...].map(\.id) == ["6", "7", "8"])
        #expect((got[6].data["leader"] as? [String: Any])?["id"] as? String == "m1")
        #expect((got[6].data["leader"] as? [String: Any])?["term"] as? Int == 5)
        // Keepalives go out every 20 ms whatever the events do; the events above can all arrive
        // sooner than that, so wait for one rather than expect it already there.
        try await poll(timeout: .seconds(60), "a keepalive comment") { sse.text.contains(": keepalive\n\n") }

        sse.disconnect()
        let end = try await sse.waitForEnd()
        #expect(throws: SSEClient.ClientGone.self) { try end.get() }
        try await poll(timeout: .seconds(60), "the watch to be released") {
            store.openWatches.withLock { $0 } == 0 && f.api.openEventStreams == 0
        }
    }

    @Test("a client that reads too slowly: the stream lets go of its watch past the backlog, then catches up from history with no gap")
    func slowConsumer() async throws {
        let store = CountingStore()
        let f = APIFixture(store: store) { $0.keepaliveInterval = .milliseconds(20); $0.eventStreamBacklogBytes = 4_000 }
        // The client reads nothing yet: even the stream's first line waits.
        let sse = try await SSEClient.open(f.api, "/api/v1/events?since=0", paused: true)
        try await poll(timeout: .seconds(30), "the stream to watch") { store.openWatches.withLock { $0 } == 1 }
        try await f.test { client in
            for _ in 0..<40 { try await client.createTask() }
        }
        // Past 4,000 queued bytes the stream lets go of its store watch while the client is silent.
        try await poll(timeout: .seconds(60), "the slow stream to release its watch") { store.openWatches.withLock { $0 } == 0 }
        #expect(sse.text.isEmpty)
        sse.resume()
        // It watches again from history once the client has read half the backlog, and delivers
        // every event once, in order, with no error.
        let got = try await sse.waitFor(40)
        #expect(got.count == 40)
        #expect(got.allSatisfy { $0.event == "task_created" })
        let ids = got.compactMap { $0.id.flatMap { Int($0) } }
        #expect(ids.count == 40 && zip(ids, ids.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(ids)")
        // The history read in one piece may itself pass the backlog: the stream then lets go once
        // more and watches again when that is written, right after the client has it.
        try await poll(timeout: .seconds(30), "the stream to watch again") { store.openWatches.withLock { $0 } == 1 }
        // Live again: a new change arrives on the same stream.
        try await f.test { client in try await client.createTask() }
        #expect(try await sse.waitFor(41).last?.id == "\((ids.last ?? 0) + 1)")
        sse.disconnect()
        _ = try await sse.waitForEnd()
    }

    @Test("a slow client that goes away while its stream waits for it to catch up ends the stream")
    func slowConsumerLeaves() async throws {
        let store = CountingStore()
        let f = APIFixture(store: store) { $0.keepaliveInterval = .milliseconds(20); $0.eventStreamBacklogBytes = 4_000 }
        let sse = try await SSEClient.open(f.api, "/api/v1/events?since=0", paused: true)
        try await f.test { client in
            for _ in 0..<40 { try await client.createTask() }
        }
        try await poll(timeout: .seconds(60), "the slow stream to release its watch") { store.openWatches.withLock { $0 } == 0 }
        // The wait for the backlog to drain must end with the stream, or the stream never ends.
        sse.disconnect()
        let end = try await sse.waitForEnd()
        #expect(throws: SSEClient.ClientGone.self) { try end.get() }
        try await poll(timeout: .seconds(60), "the stream to unregister") { f.api.openEventStreams == 0 }
        #expect(store.openWatches.withLock { $0 } == 0)
    }

    @Test("without since: only changes after the stream opened")
    func liveOnly() async throws {
        let (f, _) = Self.fixture()
        try await f.test { client in try await client.createTask() }
        let sse = try await SSEClient.open(f.api, "/api/v1/events")
        let opened = try #require(sse.response.headers[.orchestratorIndex].flatMap { Int64($0) })
        try await f.test { client in try await client.createTask() }
        let got = try await sse.waitFor(1)
        #expect(got.map(\.id) == ["\(opened + 1)"])
        #expect((got[0].data["task"] as? [String: Any])?["id"] as? String == "t002")
        sse.disconnect()
        _ = try await sse.waitForEnd()
    }

    @Test("resume with Last-Event-ID or since: exactly the events after it; the header wins")
    func resume() async throws {
        let (f, _) = Self.fixture()
        try await f.test { client in
            for _ in 0..<4 { try await client.createTask() }
        }
        let all = try await SSEClient.open(f.api, "/api/v1/events?since=0")
        let ids = try await all.waitFor(4).compactMap(\.id)
        all.disconnect()

        let byHeader = try await SSEClient.open(f.api, "/api/v1/events?since=0", headers: [.lastEventID: ids[1]])
        #expect(try await byHeader.waitFor(2).compactMap(\.id) == Array(ids[2...]))
        let byQuery = try await SSEClient.open(f.api, "/api/v1/events?since=\(ids[2])")
        #expect(try await byQuery.waitFor(1).compactMap(\.id) == [ids[3]])
        // Nothing more arrives: write one more task and check it is the next and only new one.
        try await f.test { client in try await client.createTask() }
        let next = try await byQuery.waitFor(2)
        #expect(next.count == 2)
        #expect((next[1].data["task"] as? [String: Any])?["id"] as? String == "t005")
        byHeader.disconnect()
        byQuery.disconnect()
    }

    @Test("a transaction with several changes: ids R:0 … R, and a resume inside the revision")
    func multiEventRevision() async throws {
        let (f, _) = Self.fixture()
        let a = TaskRecord(id: "a", spec: TaskSpec(name: "a", image: "alpine"), now: 0)
        let b = TaskRecord(id: "b", spec: TaskSpec(name: "b", image: "alpine"), now: 0)
        let r = try await f.store.txn(TxnRequest(compares: [], success: [
            .put(PutRequest(key: ClusterRepository.taskKey("a"), value: ClusterRepository.encode(a))),
            .put(PutRequest(key: ClusterRepository.taskKey("b"), value: ClusterRepository.encode(b))),
        ]))
        let sse = try await SSEClient.open(f.api, "/api/v1/events?since=0")
        #expect(try await sse.waitFor(2).map(\.id) == ["\(r.revision):0", "\(r.revision)"])
        let inside = try await SSEClient.open(f.api, "/api/v1/events", headers: [.lastEventID: "\(r.revision):0"])
        let rest = try await inside.waitFor(1)
        #expect(rest.map(\.id) == ["\(r.revision)"])
        #expect((rest[0].data["task"] as? [String: Any])?["id"] as? String == "b")
        sse.disconnect()
        inside.disconnect()
    }

    @Test("filter by type")
    func filter() async throws {
        let (f, _) = Self.fixture()
        try await f.addNode("n1")
        try await f.test { client in
            for _ in 0..<3 { try await client.createTask() }
            _ = try await client.send(.delete, "/api/v1/tasks/t002")
            _ = try await client.send(.post, "/api/v1/nodes/n1/cordon")
        }
        let sse = try await SSEClient.open(f.api, "/api/v1/events?since=0&type=task_cancelled,node_cordoned")
        let got = try await sse.waitFor(2)
        #expect(got.map(\.event) == ["task_cancelled", "node_cordoned"])
        // Nothing else is sent: a later unfiltered change is skipped, a matching one comes through.
        try await f.test { client in
            try await client.createTask()
            _ = try await client.send(.delete, "/api/v1/tasks/t001")
        }
        let more = try await sse.waitFor(3)
        #expect(more.map(\.event) == ["task_cancelled", "node_cordoned", "task_cancelled"])
        #expect((more[2].data["task"] as? [String: Any])?["id"] as? String == "t001")
        sse.disconnect()
    }

    @Test("history already compacted: 410 with the error body before any stream")
    func compacted() async throws {
        let (f, store) = Self.fixture()
        try await f.test { client in
            for _ in 0..<3 { try await client.createTask() }
            let now = try await f.snapshot().revision
            try await f.store.compact(revision: now)
            let requests: [(String, HTTPFields)] = [("/api/v1/events?since=1", [:]), ("/api/v1/events", [.lastEventID: "1"])]
            for request in requests {
                let r = try await client.send(.get, request.0, headers: request.1)
                #expect(r.status == .gone)
                #expect(r.errorCode == "compacted")
                #expect(r.errorMessage?.contains("oldest available: revision \(now)") == true)
            }
        }
        #expect(store.openWatches.withLock { $0 } == 0)
        // From the compaction point on, the history is still there.
        let ok = try await SSEClient.open(f.api, "/api/v1/events?since=\(try await f.snapshot().revision - 1)")
        #expect(try await ok.waitFor(1).count == 1)
        ok.disconnect()
    }

    @Test("history lost mid-stream: an error event ends the stream")
    func errorMidStream() async throws {
        let (f, store) = Self.fixture(failWatches: .compacted(42))
        let sse = try await SSEClient.open(f.api, "/api/v1/events")
        let got = try await sse.waitFor(1)
        #expect(got[0].event == "error")
        #expect(got[0].id == nil)
        #expect((got[0].data["error"] as? [String: Any])?["code"] as? String == "compacted")
        #expect(try await sse.waitForEnd().isSuccess)
        try await poll(timeout: .seconds(60), "the watch to be released") { store.openWatches.withLock { $0 } == 0 }
    }

    @Test("timeout_seconds ends the stream cleanly once it passes, after what happened meanwhile; out of range is 400")
    func timeoutSeconds() async throws {
        let (f, store) = Self.fixture()
        let started = ContinuousClock.now
        let sse = try await SSEClient.open(f.api, "/api/v1/events?timeout_seconds=5")
        // The task is created once the stream follows the store, well inside its 5 s: with 1 s
        // and no wait, a loaded CI run once ended the stream before the creation reached it.
        try await poll(timeout: .seconds(30), "the stream to register") { f.api.openEventStreams == 1 }
        try await f.test { client in try await client.createTask() }
        // Generous above: a loaded 2-core run delays the end by seconds (a full run took 8 s).
        #expect(try await sse.waitForEnd(timeout: .seconds(60)).isSuccess)
        let took = started.duration(to: .now)
        #expect(took >= .seconds(5), "\(took)")
        #expect(sse.messages.map(\.event) == ["task_created"])
        try await poll(timeout: .seconds(60), "the watch to be released") { store.openWatches.withLock { $0 } == 0 }
        try await f.test { client in
            for bad in ["0", "86401", "-1", "x", ""] {
                let r = try await client.send(.get, "/api/v1/events?timeout_seconds=\(bad)")
                #expect(r.status == .badRequest, "timeout_seconds=\(bad)")
            }
        }
    }

    @Test("closeEventStreams ends open streams cleanly with a shutdown event")
    func shutdown() async throws {
        let (f, store) = Self.fixture()
        let one = try await SSEClient.open(f.api, "/api/v1/events")
        let two = try await SSEClient.open(f.api, "/api/v1/events?type=node_down")
        try await poll(timeout: .seconds(60), "streams to register") { f.api.openEventStreams == 2 }
        f.api.closeEventStreams()
        #expect(try await one.waitForEnd().isSuccess)
        #expect(try await two.waitForEnd().isSuccess)
        #expect(one.messages.last?.event == "shutdown")
        try await poll(timeout: .seconds(60), "the watches to be released") { store.openWatches.withLock { $0 } == 0 }
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}
