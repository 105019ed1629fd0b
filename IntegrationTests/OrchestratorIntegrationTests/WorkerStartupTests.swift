import Foundation
import RaftTestSupport
import Testing
import TestGate

/// Workers started the way a newcomer starts them: several on one host, no port flags.
@Suite(.serialized, .heavy) struct WorkerStartupTests {
    @Test("two workers in their own data directories need no port flag; a second one in the same directory refuses, naming --data-dir")
    func severalWorkersOnOneHost() async throws {
        let cluster = try ClusterHarness(masters: 1)
        defer { cluster.killAll() }
        try cluster.start()
        var started: [ManagedProcess] = []
        defer { for w in started { w.kill9() } }
        do {
            _ = try await cluster.leaderIndex()
            func worker(_ name: String, dir: String) throws -> ManagedProcess {
                let w = ManagedProcess(name: name, binary: cluster.workerBinary, arguments: [
                    "--masters", "127.0.0.1:\(cluster.rpcPorts[0])", "--join-token", cluster.joinToken, "--runtime", "process",
                    "--data-dir", "\(cluster.root)/\(dir)", "--log-level", "info",
                ] + cluster.workerTLSFlags, logPath: "\(cluster.root)/\(name).log")
                try w.start()
                started.append(w)
                return w
            }
            _ = try worker("a", dir: "wa")
            _ = try worker("b", dir: "wb")
            try await cluster.waitUntil("2 ready nodes") {
                let nodes = try await cluster.nodes(master: 0)
                return nodes.count == 2 && nodes.allSatisfy { $0["state"] as? String == "ready" }
            }
            // Each advertises the free port it bound, so logs can be fetched from both.
            let addresses = try await cluster.nodes(master: 0).compactMap { $0["address"] as? String }
            #expect(Set(addresses).count == 2 && !addresses.contains { $0.hasSuffix(":0") }, "\(addresses)")

            let twin = try worker("a2", dir: "wa")
            try await cluster.waitUntil("the second worker in wa exits", timeout: .seconds(20)) { !twin.isRunning }
            #expect(twin.termination?.status != 0)
            #expect(twin.logTail.contains("--data-dir \(cluster.root)/wa is in use by another worker"), "\(twin.logTail)")
            #expect(try await cluster.nodes(master: 0).count == 2)
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
    }
}
