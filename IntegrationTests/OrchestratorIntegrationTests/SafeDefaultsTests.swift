import Foundation
import RaftTestSupport
import Testing
import TestGate

/// Safe defaults as the shipped binaries apply them (issue 14): token files, loopback unless
/// `--insecure`, no silent fallback to the process runtime, the node's runtime label.
@Suite(.serialized, .heavy) struct SafeDefaultsTests {
    /// Runs `binary` with `arguments` until it exits (within 30 s) and returns its log.
    func refusal(_ cluster: ClusterHarness, _ binary: URL, _ name: String, _ arguments: [String]) async throws -> String {
        let process = ManagedProcess(name: name, binary: binary, arguments: arguments, logPath: "\(cluster.root)/\(name).log")
        try process.start()
        defer { process.kill9() }
        try await cluster.waitUntil("\(name) exits", timeout: .seconds(30)) { !process.isRunning }
        #expect(process.termination?.status != 0, "\(name): \(process.logTail)")
        return process.logTail
    }

    @Test("a worker joins with --join-token-file and its node says which runtime it uses; unsafe starts refuse with one line")
    func workerStartup() async throws {
        // Plain text: this is about joining with the token (a worker certificate would admit it).
        let cluster = try ClusterHarness(masters: 1, tls: false)
        defer { cluster.killAll() }
        try cluster.start()
        _ = try await cluster.leaderIndex()
        let tokenFile = "\(cluster.root)/join-token"
        try Data("\(cluster.joinToken)\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        let masters = "127.0.0.1:\(cluster.rpcPorts[0])"

        let worker = ManagedProcess(name: "w", binary: cluster.workerBinary, arguments: [
            "--masters", masters, "--join-token-file", tokenFile, "--runtime", "process",
            "--data-dir", "\(cluster.root)/w", "--log-level", "info",
        ], logPath: "\(cluster.root)/w.log")
        try worker.start()
        defer { worker.kill9() }
        try await cluster.waitUntil("the worker's node is ready") {
            try await cluster.nodes(master: 0).contains { $0["state"] as? String == "ready" }
        }
        let node = try #require(try await cluster.nodes(master: 0).first)
        #expect((node["labels"] as? [String: String])?["orchestrator.runtime"] == "process", "\(node)")

        let base = ["--masters", masters, "--data-dir", "\(cluster.root)/refused", "--log-level", "info"]
        let auto = try await refusal(cluster, cluster.workerBinary, "auto", base + [
            "--join-token-file", tokenFile, "--runtime", "auto", "--docker-socket", "\(cluster.root)/no-docker.sock"])
        #expect(auto.contains("--runtime auto: no Docker engine answers on \(cluster.root)/no-docker.sock"), "\(auto)")
        #expect(auto.contains("--runtime process"))

        let exposed = try await refusal(cluster, cluster.workerBinary, "exposed", base + [
            "--join-token-file", tokenFile, "--runtime", "process", "--listen-addr", "0.0.0.0:0"])
        #expect(exposed.contains("--listen-addr 0.0.0.0:0 lacks TLS"), "\(exposed)")
        #expect(exposed.contains("--insecure"))

        let both = try await refusal(cluster, cluster.workerBinary, "both", base + [
            "--join-token-file", tokenFile, "--join-token", "x", "--runtime", "process"])
        #expect(both.contains("--join-token and --join-token-file are both set"), "\(both)")

        let empty = "\(cluster.root)/empty-token"
        FileManager.default.createFile(atPath: empty, contents: Data())
        let emptyLog = try await refusal(cluster, cluster.workerBinary, "empty", base + ["--join-token-file", empty, "--runtime", "process"])
        #expect(emptyLog.contains("--join-token-file: \(empty) is empty"), "\(emptyLog)")

        let reserved = try await refusal(cluster, cluster.workerBinary, "reserved", base + [
            "--join-token-file", tokenFile, "--runtime", "process", "--labels", "orchestrator.runtime=docker"])
        #expect(reserved.contains("--labels: \"orchestrator.runtime\" is reserved"), "\(reserved)")
    }

    @Test("a master refuses a public bind without --insecure, and names what is missing")
    func masterPublicBind() async throws {
        let cluster = try ClusterHarness(masters: 1)
        defer { cluster.killAll() }
        let port = cluster.apiPorts[0]
        let log = try await refusal(cluster, cluster.masterBinary, "public", [
            "--id", "m1", "--data-dir", "\(cluster.root)/public", "--api-addr", "0.0.0.0:\(port)",
            "--rpc-addr", "127.0.0.1:\(cluster.rpcPorts[0])", "--etcd-addr", "off", "--join-token", "t",
        ])
        #expect(log.contains("--api-addr 0.0.0.0:\(port) lacks TLS (--tls-ca, --tls-cert, --tls-key) and --api-token-file"), "\(log)")
        let missing = try await refusal(cluster, cluster.masterBinary, "missing-file", [
            "--id", "m1", "--data-dir", "\(cluster.root)/missing", "--api-token-file", "\(cluster.root)/nope",
        ])
        #expect(missing.contains("--api-token-file: cannot read \(cluster.root)/nope"), "\(missing)")
    }
}
