#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestGate

/// Issue 15, "exactly one running copy of a task", on the worker: a worker cut off from every
/// master stops its tasks before the masters may start them elsewhere (its lease), and a worker
/// killed after a task ended but before a master acknowledged it neither runs it again nor
/// forgets to report it.
@Suite(.serialized, .heavy) struct WorkerFencingTests {
    static func create(_ cluster: ClusterHarness, name: String, command: String, restart: String = "never") async throws -> String {
        let r = try await cluster.request(.POST, master: 0, "/api/v1/tasks", body: ClusterIntegrationTests.taskBody(name, command: command, restart: restart))
        guard r.status == 201, let id = (r.json as? [String: Any])?["id"] as? String else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        return id
    }

    static func task(_ cluster: ClusterHarness, _ id: String) async throws -> [String: Any] {
        let r = try await cluster.request(.GET, master: 0, "/api/v1/tasks/\(id)")
        guard r.status == 200, let task = r.json as? [String: Any] else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        return task
    }

    static func lines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    @Test("a worker whose masters are all paused past its lease stops its task before they could call it down, reports it as lost contact once they are back, and never runs it twice")
    func fencedWhenEveryMasterIsSilent() async throws {
        // Down after 12 s: the masters' lease is 10 s; --lease-ms 4000 shortens it, so SIGTERM
        // at 3.2 s and SIGKILL by 4 s after the last acknowledged heartbeat was sent.
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--node-not-ready-after", "2", "--node-down-after", "12"])
        let marker = "orch-fence-\(UUID().uuidString.prefix(8))"
        defer {
            cluster.killAll()
            HostProcesses.kill(matching: marker)
        }
        do {
            try cluster.start()
            _ = try await cluster.leaderIndex()
            try cluster.addWorker(name: "w1", extraArgs: ["--lease-ms", "4000"])
            try await cluster.waitUntil("a ready node") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let marks = cluster.root + "/marks"
            let id = try await Self.create(cluster, name: "fenced", command: "echo started >> \(marks); sleep 300; : \(marker)")
            try await cluster.waitUntil("the task running") { try await Self.task(cluster, id)["state"] as? String == "running" }
            var group: pid_t?
            try await cluster.waitUntil("the task's processes") {
                group = HostProcesses.matching(marker).compactMap(HostProcesses.group(of:)).first
                return group != nil
            }
            let pgid = try #require(group)
            #expect(!HostProcesses.members(ofGroup: pgid).isEmpty)

            let paused = ContinuousClock.now
            for m in cluster.masters { m.signal(SIGSTOP) }
            try await cluster.waitUntil("the task's processes gone while every master is paused", timeout: .seconds(20)) {
                HostProcesses.members(ofGroup: pgid).isEmpty
            }
            let gone = paused.duration(to: .now)
            print("fenced \(gone) after the masters were paused")
            // At least 3.2 s after the last acknowledged send, which was about a heartbeat (1 s)
            // before the pause; well before the 12 s after which the masters call the node down.
            #expect(gone >= .milliseconds(1_500), "stopped by the fence, not by something else: \(gone)")
            #expect(gone < .seconds(10), "gone before the masters could declare the node down: \(gone)")
            for m in cluster.masters { m.signal(SIGCONT) }

            try await cluster.waitUntil("the task failed with the fence's reason", timeout: .seconds(60)) {
                let task = try await Self.task(cluster, id)
                return task["state"] as? String == "failed" && (task["reason"] as? String ?? "").contains("lost contact with the masters")
            }
            // The worker lifted its fence and joined again.
            try await cluster.waitUntil("the node ready again") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            #expect(Self.lines(marks) == 1, "started once, never again")
            #expect(HostProcesses.matching(marker).isEmpty, "no copy runs")
        } catch {
            for m in cluster.masters { m.signal(SIGCONT) }
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    @Test("a worker killed -9 after its task ended but before a master acknowledged it reports the task after a restart and does not run it again")
    func reportSurvivesAWorkerCrash() async throws {
        let cluster = try ClusterHarness(masters: 3)
        defer { cluster.killAll() }
        do {
            try cluster.start()
            _ = try await cluster.leaderIndex()
            let worker = try cluster.addWorker(name: "w1")
            try await cluster.waitUntil("a ready node") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let gate = cluster.root + "/gate", marks = cluster.root + "/marks"
            let id = try await Self.create(cluster, name: "gated", command: "while [ ! -e \(gate) ]; do sleep 0.05; done; echo ran >> \(marks)")
            try await cluster.waitUntil("the task running") { try await Self.task(cluster, id)["state"] as? String == "running" }

            // No master can acknowledge the ending: it ends, its report is saved, its files go.
            // The masters are killed, not paused: a paused master's kernel still accepts the
            // worker's report into the socket's buffer, and the master applies it on SIGCONT (CI
            // saw the task completed before the worker restarted). Killed, the report is refused.
            for m in cluster.masters { m.kill9() }
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            let reports = cluster.root + "/w1/reports", processes = cluster.root + "/w1/processes/tasks"
            try await cluster.waitUntil("the report saved and the task's files removed", timeout: .seconds(20)) {
                let saved = (try? FileManager.default.contentsOfDirectory(atPath: reports)) ?? []
                let left = (try? FileManager.default.contentsOfDirectory(atPath: processes)) ?? ["?"]
                return Self.lines(marks) == 1 && saved.contains { $0.hasSuffix(".json") } && left.isEmpty
            }
            worker.kill9()
            for m in cluster.masters { try m.start() }
            _ = try await cluster.leaderIndex()
            try await cluster.waitUntil("master 0 serving the task") { (try? await Self.task(cluster, id)) != nil }
            #expect(try await Self.task(cluster, id)["state"] as? String == "running", "the masters never heard of the ending")

            try worker.start()
            try await cluster.waitUntil("the task completed", timeout: .seconds(60)) {
                try await Self.task(cluster, id)["state"] as? String == "completed"
            }
            try await cluster.waitUntil("the acknowledged report deleted") {
                ((try? FileManager.default.contentsOfDirectory(atPath: reports)) ?? ["?"]).isEmpty
            }
            #expect(Self.lines(marks) == 1, "ran once: the restarted worker did not run it again")
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}

/// The host's processes, read from /proc: what a runtime really runs, whatever the cluster says.
enum HostProcesses {
    /// Live processes whose command line contains `text`.
    static func matching(_ text: String) -> [pid_t] {
        pids().filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(text)
        }
    }

    /// The process group of `pid`, nil when it is gone or a zombie.
    static func group(of pid: pid_t) -> pid_t? {
        guard let fields = stat(pid), fields.count > 2, fields[0] != "Z" else { return nil }
        return pid_t(fields[2])
    }

    /// The live members of process group `pgid`.
    static func members(ofGroup pgid: pid_t) -> [pid_t] {
        pids().filter { group(of: $0) == pgid }
    }

    /// Sends SIGKILL to every process whose command line contains `text` (clean-up).
    static func kill(matching text: String) {
        for pid in matching(text) { _ = Glibc.kill(pid, SIGKILL) }
    }

    private static func pids() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...
    private static func stat(_ pid: pid_t) -> [Substring]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }
}
