import AsyncHTTPClient
import Foundation
import RaftTestSupport
import Testing
import TestGate

/// `master --store etcd`: the same masters and workers with their state in a real etcd 3.4
/// (Debian's etcd-server), leader election through an etcd lease (issues 3 and 4).
@Suite(.serialized, .heavy) struct EtcdBackedClusterTests {
    /// A single-member etcd on free loopback ports with its own data directory.
    final class Etcd: Sendable {
        let clientURL: String
        let ports: [Int]
        let process: ManagedProcess

        /// - Parameter tls: serve clients and peers over TLS, requiring a certificate from the
        ///   test CA (`--client-cert-auth`), as a secured deployment does.
        init(root: String, tls: Bool) throws {
            // Below the ephemeral range and checked free (`PortBlock`): a random port in
            // 30000-50000 could be taken by any client socket of the suites running alongside,
            // and etcd then exits at once with "address already in use".
            let base = try PortBlock.reserve(offsets: [0, 1])
            let scheme = tls ? "https" : "http"
            clientURL = "\(scheme)://127.0.0.1:\(base)"
            let peer = "\(scheme)://127.0.0.1:\(base + 1)"
            process = ManagedProcess(name: "etcd", binary: URL(fileURLWithPath: ProcessInfo.processInfo.environment["ETCD_BINARY"] ?? "/usr/bin/etcd"), arguments: [
                "--name", "e", "--data-dir", root + "/etcd", "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e=\(peer)",
            ] + (tls ? TestTLS.etcdFlags : []), logPath: root + "/etcd.log")
            ports = [base, base + 1]
            try process.start()
        }

        /// Returns once etcd listens on its client and peer ports; throws if it exits first or
        /// has not bound them within 30 s.
        func waitForListeners() async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                guard process.isRunning else { throw EtcdFailure("etcd exited before listening:\n\(process.logTail)") }
                if !ports.contains(where: PortBlock.isFree) { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw EtcdFailure("etcd did not listen on \(ports) within 30 s:\n\(process.logTail)")
        }
    }

    @Test("3 masters on an external etcd: a task runs to completion, the leader is killed, a new one is elected through etcd and the next task completes too")
    func etcdBackedFailover() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-etcd-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // With the harness's TLS (the default), etcd requires the masters' certificates.
        let etcd = try Etcd(root: root, tls: ClusterHarness.tlsByDefault)
        defer { etcd.process.kill9() }
        // The harness picks its masters' ports among the ones free when it is made: etcd's must be
        // bound by then, or a master could be given one of them.
        try await etcd.waitForListeners()
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--store", "etcd", "--etcd-endpoints", etcd.clientURL])
        defer { cluster.killAll() }
        do {
            try await cluster.waitUntil("etcd to answer", timeout: .seconds(30)) {
                try await cluster.http.execute(HTTPClientRequest(url: etcd.clientURL + "/health"), timeout: .seconds(2)).status.code == 200
            }
            try cluster.start()
            let leader = try await cluster.leaderIndex()
            try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("a ready node") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }

            let first = try await cluster.request(.POST, master: (leader + 1) % 3, "/api/v1/tasks",
                                                  body: #"{"name":"e1","image":"busybox","command":["sh","-c","echo one"],"restart_policy":{"condition":"never"}}"#)
            #expect(first.status == 201, "\(first.body)")
            let firstID = try #require((first.json as? [String: Any])?["id"] as? String)
            try await cluster.waitUntil("the first task completed", timeout: .seconds(30)) {
                let r = try await cluster.request(.GET, master: leader, "/api/v1/tasks/\(firstID)")
                return (r.json as? [String: Any])?["state"] as? String == "completed"
            }

            cluster.masters[leader].kill9()
            // The dead leader's election lease (5 s) lapses, then a survivor wins the key.
            let next = try await cluster.leaderIndex(excluding: [leader])
            #expect(next != leader)
            let survivor = (0..<3).first { $0 != leader }!
            let second = try await cluster.request(.POST, master: survivor, "/api/v1/tasks",
                                                   body: #"{"name":"e2","image":"busybox","command":["sh","-c","echo two"],"restart_policy":{"condition":"never"}}"#)
            #expect(second.status == 201, "\(second.body)")
            let secondID = try #require((second.json as? [String: Any])?["id"] as? String)
            try await cluster.waitUntil("the second task completed", timeout: .seconds(60)) {
                let r = try await cluster.request(.GET, master: survivor, "/api/v1/tasks/\(secondID)")
                return (r.json as? [String: Any])?["state"] as? String == "completed"
            }
            let logs = try await cluster.request(.GET, master: survivor, "/api/v1/tasks/\(secondID)/logs")
            #expect(logs.body == "two\n")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)\n== etcd\n\(etcd.process.logTail)")
            throw error
        }
    }

    @Test("two clusters with different --etcd-prefix share one etcd: each elects its own leader and sees only its own tasks")
    func sharedEtcdWithPrefixes() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-etcd-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let etcd = try Etcd(root: root, tls: ClusterHarness.tlsByDefault)
        defer { etcd.process.kill9() }
        try await etcd.waitForListeners()
        func cluster(_ prefix: String, id: String = "m1") throws -> ClusterHarness {
            try ClusterHarness(masters: 1, masterArgs: ["--store", "etcd", "--etcd-endpoints", etcd.clientURL, "--etcd-prefix", prefix, "--id", id])
        }
        // One after the other: the second harness picks its ports once the first's are bound.
        let a = try cluster("/team-a")
        defer { a.killAll() }
        do {
            try a.start()
            _ = try await a.leaderIndex()
            // Named b1 (the last --id wins), so each cluster's leader can be told apart.
            let b = try cluster("/team-b", id: "b1")
            defer { b.killAll() }
            do {
                try b.start()
                // Each master wins its own cluster's election key and records itself as leader
                // there: with the keys shared, team-b would name team-a's master (m1) as leader.
                func leader(_ cluster: ClusterHarness) async throws -> String? {
                    ((try await cluster.request(.GET, master: 0, "/api/v1/cluster")).json as? [String: Any])?["leader_id"] as? String
                }
                try await b.waitUntil("team-b's master to lead", timeout: .seconds(20)) { try await leader(b) == "b1" }
                #expect(try await leader(a) == "m1")
                let created = try await a.request(.POST, master: 0, "/api/v1/tasks", body: #"{"name":"only-a","image":"busybox","command":["true"]}"#)
                #expect(created.status == 201, "\(created.body)")
                let id = try #require((created.json as? [String: Any])?["id"] as? String)
                #expect(try await a.request(.GET, master: 0, "/api/v1/tasks/\(id)").status == 200)
                #expect(try await b.request(.GET, master: 0, "/api/v1/tasks/\(id)").status == 404)
                let listed = try await b.request(.GET, master: 0, "/api/v1/tasks")
                #expect(!listed.body.contains("only-a"), "\(listed.body)")
            } catch {
                Issue.record("\(error)\n== team-b\n\(b.logs)")
                throw error
            }
        } catch {
            Issue.record("\(error)\n== team-a\n\(a.logs)\n== etcd\n\(etcd.process.logTail)")
            throw error
        }
    }
}

/// etcd did not come up; the message carries its log tail.
private struct EtcdFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
