import Foundation
import Testing
import TestGate

/// 3 masters and 3 workers (process runtime) as real processes on 127.0.0.1 (issue 4).
@Suite(.serialized, .heavy) struct ClusterIntegrationTests {
    static func taskBody(_ name: String, command: String, cpu: Int = 100, restart: String = "never") -> String {
        let escaped = command.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return #"{"name":"\#(name)","image":"busybox","command":["sh","-c","\#(escaped)"],"resources":{"cpu":\#(cpu),"memory":64},"restart_policy":{"condition":"\#(restart)"}}"#
    }

    /// Starts 3 masters and 3 workers and waits until all 3 nodes are ready.
    static func startCluster(masterArgs: [String] = []) async throws -> ClusterHarness {
        let cluster = try ClusterHarness(masters: 3, masterArgs: masterArgs)
        try cluster.start()
        _ = try await cluster.leaderIndex()
        for i in 1...3 { try cluster.addWorker(name: "w\(i)") }
        try await cluster.waitUntil("3 ready nodes") {
            let nodes = try await cluster.nodes(master: 0)
            return nodes.count == 3 && nodes.allSatisfy { $0["state"] as? String == "ready" }
        }
        return cluster
    }

    @Test("200 tasks submitted through followers all complete exactly once, with the leader killed halfway")
    func twoHundredTasksThroughFailover() async throws {
        let cluster = try await Self.startCluster()
        defer { cluster.killAll() }
        do {
            let marks = cluster.root + "/marks"
            FileManager.default.createFile(atPath: marks, contents: nil)
            var leader = try await cluster.leaderIndex()
            var dead: Set<Int> = []
            let started = ContinuousClock.now
            for i in 0..<200 {
                if i == 100 {
                    cluster.masters[leader].kill9()
                    dead.insert(leader)
                }
                let followers = (0..<3).filter { $0 != leader && !dead.contains($0) }
                let target = followers.isEmpty ? (0..<3).first { !dead.contains($0) }! : followers[i % followers.count]
                let r = try await cluster.request(.POST, master: target, "/api/v1/tasks",
                                                  body: Self.taskBody("it-\(i)", command: "echo it-\(i) >> \(marks)"))
                #expect(r.status == 201, "task \(i) through m\(target + 1): \(r.status) \(r.body)")
                if i == 100 { leader = try await cluster.leaderIndex(excluding: dead) }
            }
            print("200 tasks submitted after \(started.duration(to: .now)) (leader m\(leader + 1) now)")
            let survivor = (0..<3).first { !dead.contains($0) }!
            try await cluster.waitUntil("200 completed tasks", timeout: .seconds(120)) {
                let tasks = try await cluster.tasks(master: survivor)
                return tasks.count == 200 && tasks.allSatisfy { $0["state"] as? String == "completed" }
            }
            print("200 tasks completed after \(started.duration(to: .now))")
            let lines = try String(contentsOfFile: marks, encoding: .utf8).split(separator: "\n").map(String.init)
            var counts: [String: Int] = [:]
            for line in lines { counts[line, default: 0] += 1 }
            #expect(counts.count == 200, "every task ran")
            let twice = counts.filter { $0.value > 1 }
            #expect(twice.isEmpty, "tasks that ran more than once: \(twice)")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    @Test("a killed worker's tasks are rescheduled on the others within the down timeout; a drained node ends with no tasks")
    func workerLossAndDrain() async throws {
        let cluster = try await Self.startCluster(masterArgs: ["--node-not-ready-after", "1", "--node-down-after", "3"])
        let marker = "orch-it-\(UUID().uuidString.prefix(8))"
        defer {
            cluster.killAll()
            // The killed worker's children outlive it by design (a worker restart adopts them).
            _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/pkill"), arguments: ["-f", marker])
        }
        do {
            for i in 0..<6 {
                let r = try await cluster.request(.POST, master: i % 3, "/api/v1/tasks",
                                                  body: Self.taskBody("long-\(i)", command: "sleep 120; : \(marker)", restart: "on-failure"))
                #expect(r.status == 201, "\(r.body)")
            }
            try await cluster.waitUntil("6 running tasks") {
                try await cluster.tasks(master: 0).filter { $0["state"] as? String == "running" }.count == 6
            }
            let before = try await cluster.tasks(master: 0)
            let victimNode = before.compactMap { $0["node"] as? String }.first!
            let victimTasks = Set(before.filter { $0["node"] as? String == victimNode }.compactMap { $0["id"] as? String })
            let nodes = try await cluster.nodes(master: 0)
            let address = nodes.first { $0["id"] as? String == victimNode }?["address"] as? String ?? ""
            let victim = cluster.workers.withLock { ws in ws.first { w in w.arguments.contains { $0.hasSuffix(String(address.split(separator: ":").last ?? "")) } } }
            #expect(victim != nil, "the worker of node \(victimNode) at \(address)")
            let killedAt = ContinuousClock.now
            victim?.kill9()
            // Down after 3 s of silence, then a reconcile pass and the restart backoff (1 s, less jitter).
            try await cluster.waitUntil("the lost tasks running elsewhere", timeout: .seconds(30)) {
                let tasks = try await cluster.tasks(master: 1)
                let moved = tasks.filter { victimTasks.contains($0["id"] as? String ?? "") }
                return moved.count == victimTasks.count && moved.allSatisfy {
                    $0["state"] as? String == "running" && $0["node"] as? String != victimNode
                }
            }
            let elapsed = killedAt.duration(to: .now)
            #expect(elapsed < .seconds(15), "rescheduled after \(elapsed)")
            let down = try await cluster.nodes(master: 2).first { $0["id"] as? String == victimNode }
            #expect(down?["state"] as? String == "down")

            // Drain one of the survivors: its tasks move to the last node.
            let tasks = try await cluster.tasks(master: 0)
            guard let drained = tasks.compactMap({ $0["node"] as? String }).first(where: { $0 != victimNode }) else {
                Issue.record("no task on a surviving node")
                return
            }
            let r = try await cluster.request(.POST, master: 1, "/api/v1/nodes/\(drained)/drain")
            #expect(r.status == 200, "\(r.body)")
            try await cluster.waitUntil("the drained node empty", timeout: .seconds(30)) {
                let all = try await cluster.tasks(master: 0)
                return !all.contains { $0["node"] as? String == drained }
                    && all.filter { $0["state"] as? String == "running" }.count == 6
            }
            let node = try await cluster.nodes(master: 0).first { $0["id"] as? String == drained }
            #expect(node?["state"] as? String == "draining")
            #expect((node?["task_count"] as? Int) == 0)
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    /// Runs Debian's etcdctl (v3 API) against the masters' etcd ports.
    static func etcdctl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        p.arguments = arguments
        p.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("etcdctl works against the masters' etcd v3 API: member list, put through a follower, get elsewhere, endpoint status and health; with TLS only with a client certificate from the cluster CA")
    func etcdctlAgainstMasters() async throws {
        let cluster = try ClusterHarness(masters: 3)
        try cluster.start()
        defer { cluster.killAll() }
        do {
            let leader = try await cluster.leaderIndex()
            let endpoints = cluster.etcdPorts.map { "127.0.0.1:\($0)" }
            let follower = endpoints[(leader + 1) % 3], other = endpoints[(leader + 2) % 3]
            let tls = cluster.etcdctlTLSFlags
            let members = try Self.etcdctl(tls + ["--endpoints", endpoints.joined(separator: ","), "member", "list"])
            #expect(members.status == 0 && members.output.split(separator: "\n").count == 3, "\(members.output)")
            #expect(["m1", "m2", "m3"].allSatisfy { members.output.contains(", \($0), ") }, "\(members.output)")
            let put = try Self.etcdctl(tls + ["--endpoints", follower, "put", "/etcdctl/k", "v1"])
            #expect(put.status == 0 && put.output.contains("OK"), "\(put.output)")
            let get = try Self.etcdctl(tls + ["--endpoints", other, "get", "/etcdctl/k", "--print-value-only"])
            #expect(get.output == "v1\n", "\(get.output)")
            let status = try Self.etcdctl(tls + ["--endpoints", endpoints.joined(separator: ","), "endpoint", "status"])
            #expect(status.status == 0 && status.output.split(separator: "\n").count == 3, "\(status.output)")
            #expect(status.output.contains("true"), "one of them is the leader: \(status.output)")
            let health = try Self.etcdctl(tls + ["--endpoints", endpoints.joined(separator: ","), "endpoint", "health"])
            #expect(health.status == 0 && health.output.components(separatedBy: "is healthy").count == 4, "\(health.output)")
            guard cluster.tls else { return }
            // Without a client certificate, in plain text, or trusting only the CA: refused, and
            // nothing is written.
            let ca = ["--cacert", TestTLS.directory.caCertificate]
            for attempt in [[], ca] {
                let refused = try Self.etcdctl(attempt + ["--endpoints", follower, "--command-timeout", "3s", "put", "/etcdctl/k", "forged"])
                #expect(refused.status != 0, "\(attempt): \(refused.output)")
            }
            let after = try Self.etcdctl(tls + ["--endpoints", other, "get", "/etcdctl/k", "--print-value-only"])
            #expect(after.output == "v1\n", "\(after.output)")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}
