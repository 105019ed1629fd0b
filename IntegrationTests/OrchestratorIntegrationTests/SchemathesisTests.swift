import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RaftTestSupport
import Testing
import TestGate

/// The API against its own document: schemathesis (PyPI) runs every check, the stateful phase
/// included, against a live 3-master cluster, once with a fixed seed and once with a fresh one.
/// Any failure fails the test, with schemathesis' output. Without `schemathesis` on PATH the test
/// is skipped, or fails under CI (`.ci/run` installs it).
///
/// The cluster runs with an API token (so `ignored_auth` has something to check) and plain HTTP on
/// loopback (TLS is tested elsewhere; here it would only add the CA to every request).
/// `IntegrationTests/schemathesis/hooks.py` keeps two state-dependent values valid (see there).
@Suite(.serialized, .heavy) struct SchemathesisTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let hooks = repository.appendingPathComponent("IntegrationTests/schemathesis/hooks.py").path
    static let token = "schemathesis-token"

    static let isCI: Bool = {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !["", "0", "false", "no"].contains(value.lowercased())
    }()

    /// `schemathesis` on PATH (or under ~/.local/bin, where `pip install --user` puts it).
    static let binary: String? = {
        let env = ProcessInfo.processInfo.environment
        var dirs = (env["PATH"] ?? "").split(separator: ":").map(String.init)
        if let home = env["HOME"] { dirs.append("\(home)/.local/bin") }
        dirs.append("/usr/local/bin")
        return dirs.map { "\($0)/schemathesis" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static var enabled: Bool { binary != nil || isCI }

    @Test("schemathesis: all checks, stateful phase included, a fixed seed and a fresh one, against 3 masters: no failure",
          .enabled(if: enabled, "needs schemathesis (pip install schemathesis)"),
          .timeLimit(.minutes(15)))
    func schemathesis() async throws {
        guard let binary = Self.binary else {
            Issue.record("schemathesis is not installed (pip install schemathesis); CI requires it")
            return
        }
        // Nodes go down 2 s after their last heartbeat: the joined node below sends none, so it is
        // down before the fuzzer starts and no fuzzed task is placed on it (a task there would
        // make its logs a 502 from a worker that does not exist).
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--api-token", Self.token, "--node-not-ready-after", "1", "--node-down-after", "2"],
                                         tls: false)
        try cluster.start()
        defer { cluster.killAll() }
        var leader = 0
        try await cluster.waitUntil("a leader, and every master ready", timeout: .seconds(60)) {
            for i in 0..<3 where try await cluster.request(.GET, master: i, "/readyz").status != 200 { return false }
            let r = try await cluster.request(.GET, master: 0, "/api/v1/cluster", headers: ["Authorization": "Bearer \(Self.token)"])
            guard let id = (r.json as? [String: Any])?["leader_id"] as? String, let n = Int(id.dropFirst()) else { return false }
            leader = n - 1
            return true
        }
        // A node for the node routes to find (hooks.py maps half of the valid ids to it): joined
        // through the worker protocol with nothing behind it, so no fuzzed task ever runs anywhere.
        try await Self.joinNode(Self.fuzzNode, port: cluster.rpcPorts[leader], token: cluster.joinToken)
        try await cluster.waitUntil("the joined node down", timeout: .seconds(30)) {
            let r = try await cluster.request(.GET, master: leader, "/api/v1/nodes/\(Self.fuzzNode)", headers: ["Authorization": "Bearer \(Self.token)"])
            return (r.json as? [String: Any])?["state"] as? String == "down"
        }
        let fresh = UInt32.random(in: 1...UInt32.max)
        // The fixed seed against the leader, the fresh one against a follower (reads there are
        // local, writes forwarded).
        for (seed, master) in [(UInt32(20261206), leader), (fresh, (leader + 1) % 3)] {
            let started = ContinuousClock.now
            let (status, output) = try await Self.run(binary, cluster: cluster, master: master, seed: seed)
            print("schemathesis --seed \(seed) against m\(master + 1): exit \(status) in \(ContinuousClock.now - started)")
            #expect(status == 0, "schemathesis --seed \(seed) against m\(master + 1) exited \(status):\n\(output)\n--- cluster logs\n\(cluster.logs.suffix(4000))")
        }
        // The node routes met the joined node (hooks.py), not only 404s: some answered 2xx.
        var found = 0
        for i in 0..<3 {
            let metrics = try await cluster.request(.GET, master: i, "/metrics", headers: ["Authorization": "Bearer \(Self.token)"]).body
            for line in metrics.split(separator: "\n") where line.hasPrefix("orchestrator_http_requests_total{")
                && line.contains("route=\"/api/v1/nodes/{id}") && line.contains("status=\"2") {
                found += Int(Double(line.split(separator: " ").last ?? "0") ?? 0)
            }
        }
        #expect(found > 0, "no node route answered 2xx: the fuzzer met only unknown nodes")
        // The fuzzer called the membership endpoints (hooks.py keeps them from changing anything):
        // the cluster still has its three voters and no learner.
        let members = try await cluster.request(.GET, master: 0, "/api/v1/cluster/members", headers: ["Authorization": "Bearer \(Self.token)"])
        let list = (members.json as? [String: Any])?["members"] as? [[String: Any]] ?? []
        #expect(list.count == 3 && list.allSatisfy { $0["learner"] as? Bool == false }, "\(members.body)")
    }

    static let fuzzNode = "fuzz-node-1"

    /// Joins a node that runs nothing (no worker process: fuzzed tasks placed on it never start).
    static func joinNode(_ id: String, port: Int, token: String) async throws {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            _ = try await Orchestrator_V1_Workers.Client(wrapping: client).join(.with {
                $0.joinToken = token
                $0.nodeID = id
                $0.address = "127.0.0.1:1"
                $0.cpuMillicores = 4000
                $0.memoryMb = 8192
            })
        }
    }

    static func run(_ binary: String, cluster: ClusterHarness, master: Int, seed: UInt32) async throws -> (Int32, String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("schemathesis-\(UUID().uuidString.prefix(8)).log").path
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        // The token as the document's bearerAuth scheme (not a blanket --header), so that
        // ignored_auth and missing_required_header can leave it out.
        let config = output + ".toml"
        // The document itself needs the token: fetched here, the file is what schemathesis reads.
        let document = output + ".openapi.json"
        let served = try await cluster.request(.GET, master: master, "/api/v1/openapi.json", headers: ["Authorization": "Bearer \(token)"])
        guard served.status == 200 else { throw ClusterHarness.HarnessError.http(served.status, served.body) }
        try served.body.write(toFile: document, atomically: true, encoding: .utf8)
        try "[auth.openapi.bearerAuth]\nbearer = \"\(token)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = [
            "--config-file", config,
            "run", document, "--url", "http://127.0.0.1:\(cluster.apiPorts[master])",
            "--checks", "all",
            // DELETE /api/v1/tasks/{id} cancels a task and keeps it readable (documented; orchctl
            // task rm relies on it): use_after_free's "deleted, so 404" does not apply.
            "--exclude-checks", "use_after_free",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--seed", String(seed),
            "--max-examples", "60",
            "--request-timeout", "15",
            "--no-color",
        ]
        var environment = ProcessInfo.processInfo.environment
        // Its cache (.schemathesis/) and Python's bytecode stay out of the repository.
        p.currentDirectoryURL = FileManager.default.temporaryDirectory
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        environment["SCHEMATHESIS_HOOKS"] = "hooks"
        // hooks.py turns valid member additions into one that is refused (member_exists), so the
        // fuzzer cannot grow or shrink the cluster under test.
        environment["ORCH_SCHEMATHESIS_MEMBER_RPC"] = "127.0.0.1:\(cluster.rpcPorts[0])"
        environment["ORCH_SCHEMATHESIS_NODE"] = fuzzNode
        environment["PYTHONPATH"] = URL(fileURLWithPath: hooks).deletingLastPathComponent().path
        p.environment = environment
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = ContinuousClock.now + .seconds(600)
        while p.isRunning {
            if ContinuousClock.now > deadline {
                p.terminate()
                throw ClusterHarness.HarnessError.timeout("schemathesis to finish within 600 s")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return (p.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }
}
