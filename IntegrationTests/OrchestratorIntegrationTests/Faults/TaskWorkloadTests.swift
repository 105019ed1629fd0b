import AsyncHTTPClient
import EtcdAPITestSupport
import EtcdProto
import Foundation
import GRPCNIOTransportHTTP2
import NIOCore
import Raft
import Synchronization
import Testing
import TestGate

/// Issue 15's task and event workloads, short profile: clients submit tasks through every
/// master's REST API with `Idempotency-Key` retries while the leader is killed with SIGKILL and
/// restarted; workers run them; three event-stream clients follow `/api/v1/events` and move to
/// another master whenever theirs goes away. Checked: every acknowledged task completes, none is
/// created twice, no task ever runs twice (each takes a lock only one copy can hold and logs its
/// start), no stored version of any node is over capacity (every version of every node record,
/// read back through the etcd API's watch from the first revision), and every event client saw
/// the same events in the same order with no gap and no duplicate. Once on the built-in Raft
/// store, once with `--store etcd` against a real etcd (then the leader is the etcd election's
/// winner, and node versions are replayed from etcd itself).
@Suite(.serialized, .heavy) struct TaskWorkloadTests {
    @Test("tasks through every master with the leader killed: all complete once, no node over capacity, every event stream identical",
          arguments: ["raft", "etcd"])
    func leaderKill(store: String) async throws {
        let seed = ProcessInfo.processInfo.environment["ORCH_FAULT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        var etcd: EtcdBackedClusterTests.Etcd?
        if store == "etcd" {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-tw-etcd-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            etcd = try EtcdBackedClusterTests.Etcd(root: root, tls: ClusterHarness.tlsByDefault)
            try await etcd?.waitForListeners()
        }
        defer { etcd?.process.kill9() }
        let cluster = try ClusterHarness(masters: 3, masterArgs: etcd.map { ["--store", "etcd", "--etcd-endpoints", $0.clientURL] } ?? [])
        let marker = "orch-tw-\(UUID().uuidString.prefix(8))"
        defer {
            cluster.killAll()
            HostProcesses.kill(matching: marker)
        }
        do {
            try cluster.start()
            let leader = try await cluster.leaderIndex()
            // Small nodes: 4 tasks of 100 millicores each at most, so placement runs into capacity.
            for w in 1...3 { try cluster.addWorker(name: "w\(w)", cpu: 400, memory: 1024) }
            try await cluster.waitUntil("three ready nodes") {
                try await cluster.nodes(master: 0).filter { $0["state"] as? String == "ready" }.count == 3
            }
            let start = try await cluster.request(.GET, master: 0, "/api/v1/cluster?consistent=true")
            let firstRevision = try #require(Int64(start.headers["x-orchestrator-index"] ?? ""))
            let live = LiveMasters(count: 3)
            let streams = (0..<3).map { EventFollower(cluster: cluster, live: live, first: $0, since: firstRevision) }
            let followers = streams.map { s in Task { await s.run() } }
            defer { for f in followers { f.cancel() } }

            let locks = cluster.root + "/locks", marks = cluster.root + "/marks"
            try FileManager.default.createDirectory(atPath: locks, withIntermediateDirectories: true)
            let submitters = (0..<4).map { client in
                Task { try await Self.submit(cluster, live: live, client: client, count: 30, seed: seed, locks: locks, marks: marks, marker: marker) }
            }
            try await Task.sleep(for: .seconds(2))  // the fault schedule, not a wait for a condition
            live.down(leader)
            cluster.masters[leader].kill9()
            try await Task.sleep(for: .seconds(3))
            try cluster.masters[leader].start()
            try await cluster.waitUntil("the old leader serving again") { try await cluster.request(.GET, master: leader, "/readyz").status == 200 }
            live.up(leader)
            var acknowledged: [String: String] = [:]  // name -> id
            for s in submitters { for (name, id) in try await s.value { acknowledged[name] = id } }
            #expect(acknowledged.count == 120, "seed \(seed): every submission acknowledged in the end")

            var tasks: [[String: Any]] = []
            try await cluster.waitUntil("every acknowledged task completed", timeout: .seconds(90)) {
                tasks = try await cluster.tasks(master: 1)
                return tasks.filter { $0["state"] as? String == "completed" }.count >= acknowledged.count
            }
            let names = tasks.compactMap { ($0["spec"] as? [String: Any])?["name"] as? String }
            #expect(Set(names).count == names.count, "seed \(seed): a task created twice: \(Dictionary(grouping: names) { $0 }.filter { $0.value.count > 1 }.keys)")
            #expect(Set(tasks.compactMap { $0["id"] as? String }) == Set(acknowledged.values), "seed \(seed): the stored tasks are exactly the acknowledged ones")
            let lines = ((try? String(contentsOfFile: marks, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            #expect(!lines.contains { $0.hasPrefix("overlap") }, "seed \(seed): two copies of a task ran at once: \(lines.filter { $0.hasPrefix("overlap") })")
            let starts = Dictionary(grouping: lines.filter { $0.hasPrefix("start") }) { $0 }
            #expect(starts.count == acknowledged.count && starts.values.allSatisfy { $0.count == 1 },
                    "seed \(seed): every task ran exactly once: \(starts.filter { $0.value.count != 1 }.keys)")

            // A last event every follower must reach, then compare what they saw.
            let sentinel = try await cluster.request(.POST, master: 2, "/api/v1/tasks",
                                                     body: ClusterIntegrationTests.taskBody("sentinel", command: "true"))
            let sentinelID = try #require((sentinel.json as? [String: Any])?["id"] as? String)
            try await cluster.waitUntil("every follower at the sentinel", timeout: .seconds(30)) {
                streams.allSatisfy { $0.hasSeen(taskCreated: sentinelID) }
            }
            let seen = streams.map { $0.events(upTo: sentinelID) }
            for (i, events) in seen.enumerated() {
                #expect(events == seen[0], "seed \(seed): follower \(i) saw other events than follower 0 (\(events.count) vs \(seen[0].count))")
                let order = events.map(\.order)
                #expect(zip(order, order.dropFirst()).allSatisfy { $0 < $1 }, "seed \(seed): follower \(i) saw events out of order or twice")
            }
            #expect(seen[0].filter { $0.type == "task_created" }.count == 121, "seed \(seed): one creation event per task")
            print("task workload (\(store)): seed \(seed), \(acknowledged.count) tasks, \(seen[0].count) events per follower, reconnects \(streams.map(\.reconnects))")

            let endpoint = etcd.map { String($0.clientURL.split(separator: "/").last ?? "") } ?? "127.0.0.1:\(cluster.etcdPorts[0])"
            try await Self.checkCapacity(cluster, endpoint: endpoint, from: firstRevision)
        } catch {
            Issue.record("seed \(seed): \(error)\n\(cluster.logs)")
            throw error
        }
    }

    /// Submits `count` tasks, each retried under its idempotency key on another live master until
    /// one acknowledges it. Returns name -> id.
    static func submit(_ cluster: ClusterHarness, live: LiveMasters, client: Int, count: Int, seed: UInt64,
                       locks: String, marks: String, marker: String) async throws -> [String: String] {
        var random = SplitMix64(seed: seed &+ UInt64(client) &* 0x9E37_79B9_7F4A_7C15)
        var ids: [String: String] = [:]
        for n in 0..<count {
            let name = "t-\(client)-\(n)"
            let command = "mkdir \(locks)/\(name) 2>/dev/null || { echo overlap \(name) >> \(marks); exit 99; }; echo start \(name) >> \(marks); "
                + "sleep 0.2; rmdir \(locks)/\(name); : \(marker)"
            let body = ClusterIntegrationTests.taskBody(name, command: command)
            let deadline = ContinuousClock.now + .seconds(60)
            while ids[name] == nil {
                guard ContinuousClock.now < deadline else { throw ClusterHarness.HarnessError.timeout("an acknowledgement for \(name)") }
                let masters = live.current()
                let master = masters[Int(random.next() % UInt64(masters.count))]
                do {
                    let r = try await cluster.request(.POST, master: master, "/api/v1/tasks", body: body,
                                                      headers: ["Idempotency-Key": "key-\(name)"], timeout: .seconds(12))
                    if r.status == 201, let id = (r.json as? [String: Any])?["id"] as? String {
                        ids[name] = id
                    } else if r.status != 503 {
                        throw ClusterHarness.HarnessError.http(r.status, r.body)
                    }
                } catch let error as ClusterHarness.HarnessError {
                    throw error
                } catch {
                    // The master went away mid-call: the task may or may not exist; the key decides.
                }
                if ids[name] == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
        }
        return ids
    }

    /// Every version of every node record since `revision`, through the etcd API's watch: none has
    /// more allocated than its capacity, or a negative allocation. A marker key written last (outside
    /// the prefixes the masters read) says when the replay is complete.
    static func checkCapacity(_ cluster: ClusterHarness, endpoint: String, from revision: Int64) async throws {
        let security: HTTP2ClientTransport.Posix.TransportSecurity = cluster.tls ? TestTLS.clientMaterial.grpcClientSecurity() : .plaintext
        let connection = try EtcdGRPCConnection(endpoint: endpoint, security: security)
        defer { Task { await connection.close() } }
        let nodes = Data("/orchestrator/nodes/".utf8), marker = Data("/orchestrator/zz-test-marker".utf8)
        _ = try await connection.kv.put(.with { $0.key = marker; $0.value = Data("end".utf8) })
        let (versions, over) = try await connection.watch.watch(requestProducer: { writer in
            try await writer.write(.with {
                $0.createRequest.key = nodes
                $0.createRequest.rangeEnd = marker + [0]
                $0.createRequest.startRevision = revision
            })
            try? await Task.sleep(for: .seconds(60))  // keeps the stream open while the replay is read
        }, onResponse: { response in
            var versions = 0
            var over: [String] = []
            for try await message in response.messages {
                for event in message.events {
                    if event.kv.key == marker { return (versions, over) }
                    guard event.type == .put, event.kv.key.starts(with: nodes) else { continue }
                    versions += 1
                    guard let node = try JSONSerialization.jsonObject(with: event.kv.value) as? [String: Any],
                          let info = node["info"] as? [String: Any],
                          let capacity = info["capacity"] as? [String: Any], let allocated = info["allocated"] as? [String: Any] else { continue }
                    for resource in ["cpu", "memory"] {
                        let a = allocated[resource] as? Int ?? 0, c = capacity[resource] as? Int ?? 0
                        if a > c || a < 0 { over.append("\(info["id"] ?? "?") at revision \(event.kv.modRevision): \(resource) \(a) of \(c)") }
                    }
                }
            }
            return (versions, over)
        })
        #expect(versions > 0, "the watch replayed no node versions")
        #expect(over.isEmpty, "nodes over capacity in stored versions: \(over)")
    }
}

/// The masters a client may call: all but the one a fault took down.
final class LiveMasters: Sendable {
    private let set: Mutex<Set<Int>>
    init(count: Int) { set = Mutex(Set(0..<count)) }
    func down(_ i: Int) { set.withLock { _ = $0.remove(i) } }
    func up(_ i: Int) { set.withLock { _ = $0.insert(i) } }
    func current() -> [Int] { set.withLock { Array($0).sorted() } }

    /// The live master after `master` (wrapping around), after a short pause: where a client
    /// whose master went away resumes.
    func next(after master: Int) async -> Int {
        try? await Task.sleep(for: .milliseconds(100))  // a reconnect's backoff, not a wait for a condition
        let masters = current()
        return masters.first { $0 > master } ?? masters.first ?? master
    }
}

/// One client of `/api/v1/events`: follows a master's stream and, when it ends or fails, resumes
/// on the next live master from the last event it saw (`Last-Event-ID`), as the API tells clients
/// to do.
final class EventFollower: Sendable {
    struct Event: Sendable, Hashable {
        var id: String
        var type: String
        var subject: String
        /// (revision, index within the revision) from the id `REV` or `REV:I` (the last of a
        /// revision has no index: it sorts after the others).
        var order: Order {
            let parts = id.split(separator: ":")
            return Order(revision: Int64(parts[0]) ?? -1, index: parts.count > 1 ? Int(parts[1]) ?? -1 : Int.max)
        }
    }

    struct Order: Comparable, Sendable {
        var revision: Int64
        var index: Int
        static func < (a: Order, b: Order) -> Bool { (a.revision, a.index) < (b.revision, b.index) }
    }

    let cluster: ClusterHarness
    let live: LiveMasters
    let first: Int
    let since: Int64
    private let seen = Mutex<[Event]>([])
    private let reconnectCount = Mutex(0)

    init(cluster: ClusterHarness, live: LiveMasters, first: Int, since: Int64) {
        self.cluster = cluster
        self.live = live
        self.first = first
        self.since = since
    }

    var reconnects: Int { reconnectCount.withLock { $0 } }

    func hasSeen(taskCreated id: String) -> Bool {
        seen.withLock { $0.contains { $0.type == "task_created" && $0.subject == id } }
    }

    /// Everything up to and including the creation of task `id`.
    func events(upTo id: String) -> [Event] {
        seen.withLock { events in
            guard let end = events.firstIndex(where: { $0.type == "task_created" && $0.subject == id }) else { return events }
            return Array(events[...end])
        }
    }

    func run() async {
        var master = first
        while !Task.isCancelled {
            let lastID = seen.withLock { $0.last?.id } ?? "\(since)"
            do {
                var request = HTTPClientRequest(url: "\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[master])/api/v1/events")
                request.headers.add(name: "Last-Event-ID", value: lastID)
                let response = try await cluster.http.execute(request, timeout: .hours(1))
                if response.status == .ok {
                    var pending = ""
                    var id = "", type = "", data = ""
                    for try await chunk in response.body {
                        pending += String(buffer: chunk)
                        while let newline = pending.firstIndex(of: "\n") {
                            let line = String(pending[..<newline])
                            pending.removeSubrange(...newline)
                            if line.isEmpty {
                                if !id.isEmpty, type != "error", type != "shutdown" { record(id: id, type: type, data: data) }
                                id = ""; type = ""; data = ""
                            } else if line.hasPrefix("id: ") {
                                id = String(line.dropFirst(4))
                            } else if line.hasPrefix("event: ") {
                                type = String(line.dropFirst(7))
                            } else if line.hasPrefix("data: ") {
                                data = String(line.dropFirst(6))
                            }
                        }
                    }
                }
            } catch {
                // The master went away: resume elsewhere.
            }
            guard !Task.isCancelled else { return }
            reconnectCount.withLock { $0 += 1 }
            master = await live.next(after: master)
        }
    }

    private func record(id: String, type: String, data: String) {
        let object = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any]
        let subject = (object?["task"] as? [String: Any])?["id"] as? String ?? (object?["node"] as? [String: Any])?["id"] as? String
            ?? (object?["id"] as? String) ?? ""
        seen.withLock { $0.append(Event(id: id, type: type, subject: subject)) }
    }
}
