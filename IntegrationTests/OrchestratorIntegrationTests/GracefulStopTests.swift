import Foundation
import Synchronization
import Testing
import TestGate

/// SIGTERM, as `docker stop` sends it.
@Suite(.serialized, .heavy) struct GracefulStopTests {
    @Test("SIGTERM on the leader: it hands leadership over and exits 0 within 3 s, and writes through the other masters never fail")
    func leaderStops() async throws {
        let cluster = try ClusterHarness(masters: 3)
        defer { cluster.killAll() }
        try cluster.start()
        do {
            let leader = try await cluster.leaderIndex()
            let others = (0..<3).filter { $0 != leader }
            for i in 0..<3 {
                try await cluster.waitUntil("m\(i + 1) ready") { try await cluster.request(.GET, master: i, "/readyz").status == 200 }
            }
            let log = WriteLog()
            // 4 writers per remaining master, each a POST after the other, until told to stop.
            let writers = Task { [log] in
                await withTaskGroup(of: Void.self) { group in
                    for master in others {
                        for w in 0..<4 {
                            group.addTask {
                                                    var n = 0
                                while !log.stop.load(ordering: .relaxed) {
                                    n += 1
                                    let body = #"{"name":"w\#(master)-\#(w)-\#(n)","image":"busybox","command":["true"]}"#
                                    do {
                                        let r = try await cluster.request(.POST, master: master, "/api/v1/tasks", body: body)
                                        if r.status == 201 { log.done.add(1, ordering: .relaxed) } else {
                                            log.failures.withLock { $0.append("m\(master + 1): \(r.status) \(r.body)") }
                                        }
                                    } catch {
                                        log.failures.withLock { $0.append("m\(master + 1): \(error)") }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            defer { log.stop.store(true, ordering: .relaxed) }
            try await cluster.waitUntil("writes flow") { log.done.load(ordering: .relaxed) >= 50 }

            let stopping = cluster.masters[leader]
            let start = ContinuousClock.now
            stopping.signal(SIGTERM)
            try await cluster.waitUntil("the leader exits", timeout: .seconds(15)) { !stopping.isRunning }
            let took = start.duration(to: .now)
            // Writes go on through the others for a while after the stop.
            let after = log.done.load(ordering: .relaxed)
            try await cluster.waitUntil("writes go on") { log.done.load(ordering: .relaxed) >= after + 50 }
            log.stop.store(true, ordering: .relaxed)
            await writers.value

            print("graceful stop of the leader took \(took); \(log.done.load(ordering: .relaxed)) writes, none failed")
            // Its log says which step took the time (the hand-off, the API's drain, the exit).
            #expect(took < .seconds(3), "the stop took \(took); its log:\n\(stopping.logTail)")
            let termination = stopping.termination
            #expect(termination?.reason == .exit && termination?.status == 0, "\(String(describing: termination))")
            #expect(log.failures.withLock { $0 }.isEmpty, "failed writes: \(log.failures.withLock { $0.prefix(5) })")
            #expect(stopping.logTail.contains("handed leadership over"), "\(stopping.logTail)")
            let next = try await cluster.leaderIndex(excluding: [leader])
            #expect(others.contains(next))
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
    }

    @Test("SIGTERM on a worker: it exits 0 at once and its running task keeps running, adopted when it comes back")
    func workerStops() async throws {
        let cluster = try ClusterHarness(masters: 1)
        defer { cluster.killAll() }
        try cluster.start()
        do {
            _ = try await cluster.leaderIndex()
            let worker = try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("a ready node") {
                try await cluster.nodes(master: 0).contains { $0["state"] as? String == "ready" }
            }
            let created = try await cluster.request(.POST, master: 0, "/api/v1/tasks",
                                                    body: #"{"name":"long","image":"busybox","command":["sleep","300"]}"#)
            let id = try #require((created.json as? [String: Any])?["id"] as? String, "\(created.body)")
            func state() async throws -> String? {
                (try await cluster.request(.GET, master: 0, "/api/v1/tasks/\(id)").json as? [String: Any])?["state"] as? String
            }
            try await cluster.waitUntil("the task runs") { try await state() == "running" }
            let start = ContinuousClock.now
            worker.signal(SIGTERM)
            try await cluster.waitUntil("the worker exits", timeout: .seconds(15)) { !worker.isRunning }
            #expect(start.duration(to: .now) < .seconds(3))
            #expect(worker.termination?.reason == .exit && worker.termination?.status == 0, "\(worker.logTail)")
            try worker.start()
            try await cluster.waitUntil("the worker adopts its task") { worker.logTail.contains("adopted running task") }
            #expect(try await state() == "running")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
    }
}

/// What the writers of a test saw.
final class WriteLog: Sendable {
    let done = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
    let stop = Atomic<Bool>(false)
}
