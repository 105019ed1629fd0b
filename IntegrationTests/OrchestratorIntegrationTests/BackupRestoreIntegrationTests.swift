import Foundation
import Testing
import TestGate

/// Backup and restore with real processes (issue 16): `etcdctl snapshot save` against a master's
/// etcd API and `GET /api/v1/cluster/snapshot` give the same kind of file; `master snapshot
/// restore` founds a new cluster from it at the old addresses; every task and node of the backup
/// is there, a task that ran through the restore still runs on its worker, and a task created after
/// the backup is gone from the store and stopped by its worker.
@Suite(.serialized, .heavy) struct BackupRestoreIntegrationTests {
    /// Runs a tool to its exit without blocking a cooperative thread (`CLIProcess` polls).
    static func run(_ cluster: ClusterHarness, _ binary: String, _ arguments: [String]) async throws -> CLIProcess.Result {
        try await CLIProcess(binary: URL(fileURLWithPath: binary), arguments: arguments,
                             environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"], directory: cluster.root).result()
    }

    static func submit(_ cluster: ClusterHarness, name: String, command: [String]) async throws -> String {
        let body = try String(decoding: JSONSerialization.data(withJSONObject: [
            "name": name, "image": "alpine", "command": command, "resources": ["cpu": 100, "memory": 16],
        ]), as: UTF8.self)
        let r = try await cluster.request(.POST, master: 0, "/api/v1/tasks", body: body)
        guard r.status == 201, let id = (r.json as? [String: Any])?["id"] as? String else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        return id
    }

    static func states(_ cluster: ClusterHarness, master: Int) async throws -> [String: String] {
        var out: [String: String] = [:]
        for task in try await cluster.tasks(master: master) {
            if let id = task["id"] as? String { out[id] = task["state"] as? String }
        }
        return out
    }

    /// The processes whose command line contains `marker` (read from /proc, so nothing blocks).
    static func processes(_ marker: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { pid in
            guard let number = Int32(pid), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker) ? number : nil
        }
    }

    static func processRunning(_ marker: String) -> Bool { !processes(marker).isEmpty }

    static func killProcesses(_ marker: String) {
        for pid in processes(marker) { kill(pid, SIGKILL) }
    }

    @Test("etcdctl snapshot save and GET /cluster/snapshot back up a running cluster; master snapshot restore founds a new cluster with every task and node; a task runs through it, one created after the backup is gone and stopped",
          .timeLimit(.minutes(5)))
    func backupAndRestore() async throws {
        // A worker lease far longer than the restore takes, so the worker keeps its tasks while no
        // master answers (the lease is what stops them otherwise; that is WorkerFencingTests').
        let health = ["--node-not-ready-after", "20", "--node-down-after", "90"]
        let cluster = try ClusterHarness(masters: 3, masterArgs: health)
        try cluster.start()
        var restored: [ManagedProcess] = []
        let marker = "\(Int.random(in: 100_000..<900_000))"
        defer {
            cluster.killAll()
            for m in restored { m.kill9() }
            Self.killProcesses("sleep \(marker)")
        }
        do {
            try await cluster.waitUntil("every master ready", timeout: .seconds(60)) {
                for i in 0..<3 where try await cluster.request(.GET, master: i, "/readyz").status != 200 { return false }
                return true
            }
            try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("the worker ready") { try await cluster.nodes(master: 0).contains { $0["state"] as? String == "ready" } }
            let quick = try await Self.submit(cluster, name: "quick", command: ["true"])
            let long = try await Self.submit(cluster, name: "long", command: ["sleep", "\(marker)1"])
            try await cluster.waitUntil("quick completed and long running", timeout: .seconds(60)) {
                let s = try await Self.states(cluster, master: 0)
                return s[quick] == "completed" && s[long] == "running"
            }
            let before = try await Self.states(cluster, master: 0)
            let nodesBefore = try await cluster.nodes(master: 0).compactMap { $0["id"] as? String }.sorted()

            // The backup: etcdctl against a follower's etcd API, and the REST endpoint of another.
            let leader = try await cluster.leaderIndex()
            let follower = (leader + 1) % 3
            let file = "\(cluster.root)/backup.db"
            let save = try await Self.run(cluster, "/usr/bin/etcdctl", cluster.etcdctlTLSFlags
                                          + ["--endpoints", "127.0.0.1:\(cluster.etcdPorts[follower])", "snapshot", "save", file])
            #expect(save.status == 0 && save.stdout.contains("Snapshot saved at \(file)"), "\(save)")
            let status = try await Self.run(cluster, cluster.masterBinary.path, ["snapshot", "status", file])
            #expect(status.status == 0 && status.stdout.contains("revision "), "\(status)")
            let rest = try await cluster.request(.GET, master: (leader + 2) % 3, "/api/v1/cluster/snapshot")
            #expect(rest.status == 200 && rest.headers["content-type"] == "application/octet-stream")
            let restFile = "\(cluster.root)/rest-backup.db"
            try Data(rest.bytes).write(to: URL(fileURLWithPath: restFile))
            let restStatus = try await Self.run(cluster, cluster.masterBinary.path, ["snapshot", "status", restFile])
            #expect(restStatus.status == 0 && restStatus.stdout.contains("revision "), "\(restStatus)")
            // Damage is caught: one byte flipped in the middle of the image.
            var damaged = try Data(contentsOf: URL(fileURLWithPath: file))
            damaged[damaged.count / 2] ^= 0xff
            try damaged.write(to: URL(fileURLWithPath: "\(cluster.root)/damaged.db"))
            let refused = try await Self.run(cluster, cluster.masterBinary.path, ["snapshot", "status", "\(cluster.root)/damaged.db"])
            #expect(refused.status != 0 && refused.stderr.contains("SHA-256 does not match"), "\(refused)")

            // Written after the backup: must not survive the restore, and its copy must stop.
            let after = try await Self.submit(cluster, name: "after", command: ["sleep", "\(marker)2"])
            try await cluster.waitUntil("the later task running", timeout: .seconds(60)) { try await Self.states(cluster, master: 0)[after] == "running" }
            #expect(Self.processRunning("sleep \(marker)1") && Self.processRunning("sleep \(marker)2"))

            // Every master lost; the worker keeps running.
            for m in cluster.masters { m.kill9() }
            let peers = (0..<3).map { "m\($0 + 1)=127.0.0.1:\(cluster.rpcPorts[$0])" }.joined(separator: ",")
            for i in 0..<3 {
                let out = try await Self.run(cluster, cluster.masterBinary.path, [
                    "snapshot", "restore", file, "--id", "m\(i + 1)", "--peers", peers, "--data-dir", "\(cluster.root)/restored-m\(i + 1)",
                ])
                #expect(out.status == 0 && out.stdout.contains("member m\(i + 1)"), "\(out)")
            }
            let again = try await Self.run(cluster, cluster.masterBinary.path, [
                "snapshot", "restore", file, "--id", "m1", "--peers", peers, "--data-dir", "\(cluster.root)/restored-m1",
            ])
            #expect(again.status != 0 && again.stderr.contains("already holds a master's state"), "\(again)")
            // The same masters (addresses, certificates, flags) on the restored data directories.
            restored = cluster.masters.enumerated().map { i, m in
                var arguments = m.arguments
                if let at = arguments.firstIndex(of: "--data-dir") { arguments[at + 1] = "\(cluster.root)/restored-m\(i + 1)" }
                return ManagedProcess(name: "r\(i + 1)", binary: m.binary, arguments: arguments, logPath: "\(cluster.root)/restored-m\(i + 1).log")
            }
            for m in restored { try m.start() }
            try await cluster.waitUntil("every restored master ready", timeout: .seconds(60)) {
                for i in 0..<3 where (try? await cluster.request(.GET, master: i, "/readyz").status) != 200 { return false }
                return true
            }
            let afterRestore = try await Self.states(cluster, master: 1)
            #expect(afterRestore[after] == nil, "a task created after the backup survived the restore")
            for (id, state) in before { #expect(afterRestore[id] == state, "task \(id) was \(state) in the backup, \(afterRestore[id] ?? "missing") after the restore") }
            #expect(try await cluster.nodes(master: 2).compactMap { $0["id"] as? String }.sorted() == nodesBefore)
            // The worker reconnects: it stops the copy the new cluster does not know, keeps the one
            // it does, and heartbeats (its node stays ready).
            try await cluster.waitUntil("the later task's process stopped", timeout: .seconds(60)) { !Self.processRunning("sleep \(marker)2") }
            #expect(Self.processRunning("sleep \(marker)1"), "the task that ran through the restore was stopped")
            #expect(try await Self.states(cluster, master: 0)[long] == "running")
            try await cluster.waitUntil("the worker's heartbeat seen by the new cluster") {
                let cl = try await cluster.request(.GET, master: 0, "/api/v1/cluster")
                let node = try await cluster.nodes(master: 0).first
                return cl.status == 200 && node?["state"] as? String == "ready"
            }
            // The new cluster takes writes and runs them.
            let fresh = try await Self.submit(cluster, name: "fresh", command: ["true"])
            try await cluster.waitUntil("a new task completed on the restored cluster", timeout: .seconds(60)) {
                try await Self.states(cluster, master: 0)[fresh] == "completed"
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)\n\(restored.map { "== \($0.name)\n\($0.logTail)" }.joined(separator: "\n"))")
            throw error
        }
    }
}
