import AsyncHTTPClient
import Foundation
import NIOFoundationCompat
import OrchctlKit
import RaftTestSupport
import Synchronization
import Testing
import TestGate

/// `orchctl` as a process, its stdout and stderr in files (no pipe to fill up), waited for by
/// polling `isRunning` with `Task.sleep` (no blocked cooperative thread).
final class CLIProcess: Sendable {
    struct Result: Sendable, CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
    }

    let arguments: [String]
    let outPath: String
    let errPath: String
    private let process = Mutex<Process?>(nil)

    init(binary: URL, arguments: [String], environment: [String: String], directory: String) throws {
        self.arguments = arguments
        let id = UUID().uuidString.prefix(8)
        outPath = "\(directory)/orchctl-\(id).out"
        errPath = "\(directory)/orchctl-\(id).err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        p.environment = environment
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process.withLock { $0 = p }
    }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.withLock { $0!.isRunning } }

    /// Waits for the exit (bounded); kills the process and throws when it does not come.
    func result(timeout: Duration = .seconds(60)) async throws -> Result {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline {
                kill()
                throw ClusterHarness.HarnessError.timeout("orchctl \(arguments.joined(separator: " ")) to exit\n\(stdout)\n\(stderr)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return Result(status: process.withLock { $0!.terminationStatus }, stdout: stdout, stderr: stderr)
    }

    func kill() {
        process.withLock { p in if let p, p.isRunning { p.terminate() } }
    }
}

/// orchctl against 3 masters (TLS, the harness's default, and an API token) and a process worker
/// (issue 17).
@Suite(.serialized, .heavy) struct OrchctlIntegrationTests {
    static let token = "orchctl-it-token"

    struct Env {
        let cluster: ClusterHarness
        let binary: URL

        /// `--master` for masters `indexes`, the TLS flags and the token.
        func flags(_ indexes: [Int] = [0, 1, 2]) -> [String] {
            connection(indexes.map { "\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[$0])" })
        }

        func connection(_ urls: [String]) -> [String] {
            var flags = ["--master", urls.joined(separator: ","), "--token", OrchctlIntegrationTests.token]
            if cluster.tls {
                let client = TestTLS.clientIdentity
                flags += ["--cacert", TestTLS.directory.caCertificate, "--cert", TestTLS.directory.certificate(client),
                          "--key", TestTLS.directory.key(client)]
            }
            return flags
        }

        /// A clean environment: no ORCH_ variables of the test process, a HOME without a config file.
        func environment(_ extra: [String: String] = [:]) -> [String: String] {
            ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": cluster.root].merging(extra) { $1 }
        }

        func start(_ arguments: [String], extraEnv: [String: String] = [:]) throws -> CLIProcess {
            try CLIProcess(binary: binary, arguments: arguments, environment: environment(extraEnv), directory: cluster.root)
        }

        /// Runs `orchctl ARGS` with the connection flags appended.
        func run(_ arguments: [String], masters: [Int] = [0, 1, 2], timeout: Duration = .seconds(60)) async throws -> CLIProcess.Result {
            try await start(Self.inserting(flags(masters), into: arguments)).result(timeout: timeout)
        }

        /// `flags` before the `--` that starts a task's command (after it they would be the command's).
        static func inserting(_ flags: [String], into arguments: [String]) -> [String] {
            guard let terminator = arguments.firstIndex(of: "--") else { return arguments + flags }
            return Array(arguments[..<terminator]) + flags + Array(arguments[terminator...])
        }

        /// Runs and expects exit 0; returns stdout.
        func ok(_ arguments: [String], masters: [Int] = [0, 1, 2]) async throws -> String {
            let r = try await run(arguments, masters: masters)
            #expect(r.status == 0, "orchctl \(arguments.joined(separator: " ")): \(r)")
            return r.stdout
        }

        func json(_ arguments: [String], masters: [Int] = [0, 1, 2]) async throws -> [String: Any] {
            let out = try await ok(arguments + ["-o", "json"], masters: masters)
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(out)")
        }
    }

    /// 3 masters with an API token and one process worker, ready.
    static func startCluster() async throws -> Env {
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--api-token", token])
        guard let binary = RaftProcessCluster.locateBinary(named: "orchctl") else {
            throw ClusterHarness.HarnessError.missingBinary("orchctl")
        }
        try cluster.start()
        try cluster.addWorker(name: "w1")
        let env = Env(cluster: cluster, binary: binary)
        try await cluster.waitUntil("a leader and one ready node", timeout: .seconds(60)) {
            let nodes = try await env.run(["node", "ls", "-o", "json"], timeout: .seconds(10))
            let list = (nodes.json as? [String: Any])?["nodes"] as? [[String: Any]] ?? []
            return list.count == 1 && list[0]["state"] as? String == "ready"
        }
        return env
    }

    /// `task run NAME ... EXTRA -- sh -c COMMAND`.
    static func taskArgs(_ name: String, _ command: String, _ extra: [String] = []) -> [String] {
        ["task", "run", name, "--image", "busybox", "--cpu", "100", "--memory", "64", "--restart", "never"] + extra + ["--", "sh", "-c", command]
    }

    @Test("every command against a real cluster: tasks, nodes, cluster; --wait exit codes; output formats")
    func commands() async throws {
        let env = try await Self.startCluster()
        let cluster = env.cluster
        defer { cluster.killAll() }
        do {
            let started = ContinuousClock.now
            // cluster: three members, a leader, each member ready.
            let info = try await env.json(["cluster"])
            #expect(info["leader_id"] as? String != nil)
            let health = try #require(info["health"] as? [String: String])
            #expect(health.count == 3)
            try await cluster.waitUntil("every member ready") {
                let h = try await env.json(["cluster"])["health"] as? [String: String] ?? [:]
                return h.count == 3 && h.values.allSatisfy { $0 == "ready" }
            }
            let table = try await env.ok(["cluster"])
            #expect(table.contains("Leader:") && table.contains("Term:") && table.contains("Applied index:"), "\(table)")
            for m in ["m1", "m2", "m3"] { #expect(table.contains(m), "\(table)") }
            #expect(table.contains("API ADDRESS") && table.contains("ready"))
            // cluster snapshot save: the backup file, in etcd's layout (32 bytes past whole 512-byte pages).
            let backup = "\(cluster.root)/orchctl-backup.db"
            let saved = try await env.ok(["cluster", "snapshot", "save", backup])
            #expect(saved.contains("Snapshot saved at \(backup)"), "\(saved)")
            let file = try #require(FileManager.default.contents(atPath: backup))
            #expect(file.starts(with: Array("ORCHBAK1".utf8)) && file.count % 512 == 32)
            #expect(!FileManager.default.fileExists(atPath: backup + ".part"))

            // -w: the lists, then every change (one line per change when stdout is not a terminal).
            let taskWatch = try env.start(["task", "ls", "-w"] + env.flags())
            let nodeWatch = try env.start(["node", "ls", "--watch", "-o", "json"] + env.flags())
            defer {
                taskWatch.kill()
                nodeWatch.kill()
            }

            // task run --wait: 0 for success (with --logs), the task's own code for a failure.
            let good = try await env.run(Self.taskArgs("ok", "echo hello-orchctl", ["--wait", "--logs"]))
            #expect(good.status == 0, "\(good)")
            let lines = good.stdout.split(separator: "\n").map(String.init)
            let okID = try #require(lines.first)
            #expect(lines.contains("hello-orchctl"), "\(good)")
            #expect(good.stderr.contains("task \(okID) completed"), "\(good)")
            let bad = try await env.run(Self.taskArgs("fails", "exit 3", ["--wait"]))
            #expect(bad.status == 3, "\(bad)")
            let badID = bad.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(bad.stderr.contains("failed with exit code 3"), "\(bad)")
            try await cluster.waitUntil("task ls -w to show both tasks' ends") {
                let lines = taskWatch.stdout.split(separator: "\n")
                return lines.contains { $0.hasPrefix(okID) && $0.contains(" completed ") }
                    && lines.contains { $0.hasPrefix(badID) && $0.contains(" failed ") }
            }
            #expect(taskWatch.stdout.hasPrefix("No tasks.\n") || taskWatch.stdout.hasPrefix("ID "), "\(taskWatch.stdout)")

            // task run without --wait prints only the id; get shows the placement explanation.
            let sleeperID = try await env.ok(Self.taskArgs("sleeper", "sleep 60")).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!sleeperID.isEmpty && !sleeperID.contains(" "))
            try await cluster.waitUntil("the sleeper running") {
                try await env.json(["task", "get", sleeperID])["state"] as? String == "running"
            }
            let description = try await env.ok(["task", "get", sleeperID])
            #expect(description.contains("Placement:") && description.contains("algorithm") && description.contains("score"), "\(description)")
            #expect(description.contains("FILTER") && description.contains("NODES REMOVED"), "\(description)")
            let placement = try #require(try await env.json(["task", "get", sleeperID])["placement"] as? [String: Any])
            #expect((placement["filters"] as? [Any])?.isEmpty == false)
            let yaml = try await env.ok(["task", "get", sleeperID, "-o", "yaml"])
            #expect(yaml.contains("placement:\n") && yaml.contains("state: running"), "\(yaml)")

            // task ls: all, by state, by node.
            let all = try await env.ok(["task", "ls"])
            for id in [okID, badID, sleeperID] { #expect(all.contains(id), "\(all)") }
            #expect(all.hasPrefix("ID "), "\(all)")
            let completed = try await env.ok(["task", "ls", "--state", "completed"])
            #expect(completed.contains(okID) && !completed.contains(badID), "\(completed)")
            let nodeID = try #require(cluster.nodeID(ofWorker: "w1"))
            let onNode = try await env.json(["task", "ls", "--node", nodeID])
            let onNodeIDs = (onNode["tasks"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(onNodeIDs == [sleeperID], "only the running task is on the node: \(onNodeIDs)")

            // task logs; -f of a task that has ended prints its output and exits at once.
            let logs = try await env.ok(["task", "logs", okID])
            #expect(logs.contains("hello-orchctl"))
            let follow = try await env.run(["task", "logs", "-f", okID])
            #expect(follow.status == 0 && follow.stdout == "hello-orchctl\n" && follow.stderr.isEmpty, "\(follow)")

            // node ls / get / cordon / uncordon / drain.
            let nodes = try await env.ok(["node", "ls"])
            #expect(nodes.contains(nodeID) && nodes.contains("ready"), "\(nodes)")
            let node = try await env.ok(["node", "get", nodeID])
            #expect(node.contains("Address:") && node.contains("Heartbeat:"), "\(node)")
            let cordoned = try await env.json(["node", "cordon", nodeID])
            #expect(cordoned["schedulable"] as? Bool == false)
            try await cluster.waitUntil("node ls -w to show the cordon") {
                nodeWatch.stdout.split(separator: "\n").contains { line in
                    guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return false }
                    return o["id"] as? String == nodeID && o["schedulable"] as? Bool == false
                }
            }
            #expect(try await env.ok(["node", "uncordon", nodeID]).contains("schedulable yes"))
            let drained = try await env.json(["node", "drain", nodeID])
            #expect(drained["state"] as? String == "draining")
            let back = try await env.json(["node", "uncordon", nodeID])
            #expect(back["state"] as? String == "ready" && back["schedulable"] as? Bool == true, "\(back)")
            // node rm: refused while a task is placed on it, with the server's one-line reason.
            let busy = try await env.run(["node", "rm", nodeID])
            #expect(busy.status == 1 && busy.stderr.contains("drain it first") && busy.stderr.split(separator: "\n").count == 1, "\(busy)")

            // task rm cancels.
            let removed = try await env.ok(["task", "rm", sleeperID])
            #expect(removed.contains("cancelled"), "\(removed)")
            print("orchctl commands: \(started.duration(to: .now))")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    @Test("exit codes: server refusal 1 with its message on one line, usage 2, unreachable 3; failover past a dead master; credentials from env, token file and config file")
    func errorsAndConnection() async throws {
        let env = try await Self.startCluster()
        let cluster = env.cluster
        defer { cluster.killAll() }
        do {
            // What orchctl calls and reads is all in the live OpenAPI document.
            var request = HTTPClientRequest(url: "\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[0])/api/v1/openapi.json")
            request.headers.add(name: "Authorization", value: "Bearer \(Self.token)")
            let response = try await cluster.http.execute(request, timeout: .seconds(15))
            let document = try await response.body.collect(upTo: 8 << 20)
            let parsed = try #require(JSONValue.parse(Data(buffer: document)))
            #expect(APIContract.problems(in: parsed) == [])

            // Refused: an unknown task, an invalid image, a missing token.
            let missing = try await env.run(["task", "get", "no-such-task"])
            #expect(missing.status == 1 && missing.stdout.isEmpty, "\(missing)")
            #expect(missing.stderr == "orchctl: no task \"no-such-task\"\n", "\(missing)")
            let invalid = try await env.run(["task", "run", "x", "--image", "NOT A REFERENCE"])
            #expect(invalid.status == 1 && invalid.stderr.hasPrefix("orchctl: image") && invalid.stderr.split(separator: "\n").count == 1, "\(invalid)")
            let urls = [0, 1, 2].map { "\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[$0])" }
            let tlsFlags = Array(env.connection(urls).dropFirst(4))
            let noToken = try await env.start(["node", "ls", "--master", urls[0]] + tlsFlags).result()
            #expect(noToken.status == 1 && noToken.stderr.hasPrefix("orchctl: ") && noToken.stderr.split(separator: "\n").count == 1, "\(noToken)")

            // Usage.
            let usage = try await env.run(["task", "run", "x"])
            #expect(usage.status == 2 && usage.stderr.contains("--image"), "\(usage)")
            #expect(try await env.run(["node", "frobnicate"]).status == 2)
            let completion = try await env.start(["--generate-completion-script", "bash"]).result()
            #expect(completion.status == 0 && completion.stdout.contains("complete") && completion.stdout.contains("orchctl"), "\(completion)")

            // Failover: the first URL is a port where nothing listens.
            let dead = try PortBlock.reserve(offsets: [0, 1])
            let deadURLs = ["\(cluster.scheme)://127.0.0.1:\(dead)", "\(cluster.scheme)://127.0.0.1:\(dead + 1)"]
            let failover = try await env.start(["node", "ls", "-o", "json"] + env.connection([deadURLs[0], urls[1]])).result()
            #expect(failover.status == 0 && failover.stdout.contains("\"nodes\""), "\(failover)")
            let submitted = try await env.start(Env.inserting(env.connection([deadURLs[0], urls[2]]), into: Self.taskArgs("via-failover", "true", ["--wait"]))).result()
            #expect(submitted.status == 0, "\(submitted)")

            // Unreachable: no URL answers.
            let unreachable = try await env.start(["cluster"] + env.connection(deadURLs)).result()
            #expect(unreachable.status == 3, "\(unreachable)")
            #expect(unreachable.stderr.hasPrefix("orchctl: no master answered") && unreachable.stderr.split(separator: "\n").count == 1, "\(unreachable)")

            // The same connection from the environment, a token file and the config file.
            let tokenFile = cluster.root + "/token"
            try (Self.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
            var fromEnv = ["ORCH_MASTERS": urls.joined(separator: ","), "ORCH_API_TOKEN_FILE": tokenFile]
            if cluster.tls {
                let client = TestTLS.clientIdentity
                fromEnv["ORCH_CACERT"] = TestTLS.directory.caCertificate
                fromEnv["ORCH_CERT"] = TestTLS.directory.certificate(client)
                fromEnv["ORCH_KEY"] = TestTLS.directory.key(client)
            }
            let viaEnv = try await env.start(["node", "ls"], extraEnv: fromEnv).result()
            #expect(viaEnv.status == 0 && viaEnv.stdout.contains("ready"), "\(viaEnv)")
            let config = cluster.root + "/orchctl-config"
            let lines = ["# written by the test", "masters = \(urls[2])", "token-file = \(tokenFile)"]
                + (cluster.tls ? ["cacert = \(fromEnv["ORCH_CACERT"]!)", "cert = \(fromEnv["ORCH_CERT"]!)", "key = \(fromEnv["ORCH_KEY"]!)"] : [])
            try lines.joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
            let viaConfig = try await env.start(["cluster", "-o", "json"], extraEnv: ["ORCHCTL_CONFIG": config]).result()
            #expect(viaConfig.status == 0 && (viaConfig.json as? [String: Any])?["node_id"] as? String == "m3", "\(viaConfig)")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    @Test("events: the stream resumes on the next --master after the followed master is killed, missing and repeating nothing")
    func eventsResume() async throws {
        let env = try await Self.startCluster()
        let cluster = env.cluster
        defer { cluster.killAll() }
        do {
            let leader = try await Self.leader(env)
            let followed = (0..<3).first { $0 != leader }!
            let next = (0..<3).first { $0 != leader && $0 != followed }!
            let start = try await env.json(["cluster"], masters: [next])["revision"] as? Int ?? 0
            let events = try env.start(["events", "--since", String(start), "-o", "json", "--verbose", "--type",
                                        "task_created,task_assigned,task_running,task_completed"] + env.flags([followed, next]))
            defer { events.kill() }
            let first = try await env.ok(Self.taskArgs("before-kill", "true", ["--wait"]), masters: [next])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try await cluster.waitUntil("the completion of the first task in the stream") {
                Self.records(events.stdout).contains { $0.id == first && $0.type == "task_completed" }
            }
            cluster.masters[followed].kill9()
            let second = try await env.ok(Self.taskArgs("after-kill", "true", ["--wait"]), masters: [next])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try await cluster.waitUntil("the completion of the second task in the stream") {
                Self.records(events.stdout).contains { $0.id == second && $0.type == "task_completed" }
            }
            #expect(events.isRunning)
            let followedURL = "127.0.0.1:\(cluster.apiPorts[followed])"
            let nextURL = "127.0.0.1:\(cluster.apiPorts[next])"
            #expect(events.stderr.contains(followedURL) && events.stderr.contains(nextURL), "\(events.stderr)")

            // A fresh replay from the same revision is the reference: same events, same order.
            let seen = Self.records(events.stdout)
            let replay = try env.start(["events", "--since", String(start), "-o", "json", "--type",
                                        "task_created,task_assigned,task_running,task_completed"] + env.flags([next]))
            defer { replay.kill() }
            try await cluster.waitUntil("the replay to reach the second completion") {
                Self.records(replay.stdout).contains { $0.id == second && $0.type == "task_completed" }
            }
            let reference = Self.records(replay.stdout)
            #expect(seen == Array(reference.prefix(seen.count)), "followed: \(seen)\nreplay: \(reference)")
            #expect(Set(seen.map(\.key)).count == seen.count, "no event twice")
            for id in [first, second] {
                #expect(seen.filter { $0.id == id }.map(\.type) == ["task_created", "task_assigned", "task_running", "task_completed"],
                        "\(id): \(seen)")
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    struct Record: Hashable, CustomStringConvertible {
        var revision: Int
        var type: String
        var id: String
        var key: String { "\(revision) \(type) \(id)" }
        var description: String { key }
    }

    /// The events of a `-o json` stream (one object a line; a partly written last line is skipped).
    static func records(_ text: String) -> [Record] {
        text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let revision = o["revision"] as? Int, let type = o["type"] as? String else { return nil }
            let id = ((o["task"] as? [String: Any])?["id"] as? String) ?? ((o["node"] as? [String: Any])?["id"] as? String) ?? ""
            return Record(revision: revision, type: type, id: id)
        }
    }

    @Test("task logs -f: stdout and stderr apart, as written, through a follower; resumes on the next --master when its master is killed, repeating and losing nothing")
    func logsFollow() async throws {
        let env = try await Self.startCluster()
        let cluster = env.cluster
        defer { cluster.killAll() }
        do {
            let leader = try await Self.leader(env)
            let followed = (0..<3).first { $0 != leader }!
            let next = (0..<3).first { $0 != leader && $0 != followed }!
            // The process worker runs tasks on this machine, so a file can pace the task.
            let gate = cluster.root + "/gate-1", gate2 = cluster.root + "/gate-2"
            let script = "echo one; echo warn >&2; while [ ! -e \(gate) ]; do sleep 0.05; done; echo two; "
                + "while [ ! -e \(gate2) ]; do sleep 0.05; done; echo three; echo bye >&2; exit 4"
            let id = try await env.ok(Self.taskArgs("chatty", script)).trimmingCharacters(in: .whitespacesAndNewlines)
            try await cluster.waitUntil("the task running") { try await env.json(["task", "get", id])["state"] as? String == "running" }
            let follow = try env.start(["task", "logs", id, "-f"] + env.flags([followed, next]))
            defer { follow.kill() }
            try await cluster.waitUntil("the output so far") { follow.stdout == "one\n" && follow.stderr == "warn\n" }
            FileManager.default.createFile(atPath: gate, contents: Data())
            try await cluster.waitUntil("new output as it is written") { follow.stdout == "one\ntwo\n" }
            cluster.masters[followed].kill9()
            FileManager.default.createFile(atPath: gate2, contents: Data())
            let result = try await follow.result(timeout: .seconds(60))
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout == "one\ntwo\nthree\n" && result.stderr == "warn\nbye\n", "\(result)")

            // The same output through the API: stream and tail select; since in the future is empty.
            let errOnly = try await env.ok(["task", "logs", id, "--stream", "stderr"], masters: [next])
            #expect(errOnly == "warn\nbye\n", "\(errOnly)")
            #expect(try await env.ok(["task", "logs", id, "--tail", "2"], masters: [next]) == "three\nbye\n")
            #expect(try await env.ok(["task", "logs", id, "--since", "2099-01-01T00:00:00Z"], masters: [next]).isEmpty)
            #expect(try await env.run(["task", "logs", id, "--since", "yesterday"]).status == 2)
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    static func leader(_ env: Env) async throws -> Int {
        var found: Int?
        try await env.cluster.waitUntil("a leader") {
            guard let id = try await env.json(["cluster"])["leader_id"] as? String, let n = Int(id.dropFirst()) else { return false }
            found = n - 1
            return true
        }
        return found!
    }
}
