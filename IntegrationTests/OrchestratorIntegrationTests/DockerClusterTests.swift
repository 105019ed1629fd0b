import Foundation
import Testing
import TestGate

/// Runs `docker` with `arguments`; returns its exit status and standard output. Waited for by
/// polling (`CLIProcess`), so a slow dockerd holds no cooperative thread: the suite's `.enabled`
/// check runs while the other suites start, and two blocked threads are the whole pool on CI.
@discardableResult
func docker(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    let r = try await CLIProcess(binary: URL(fileURLWithPath: "/usr/bin/docker"), arguments: arguments,
                                 environment: ProcessInfo.processInfo.environment,
                                 directory: FileManager.default.temporaryDirectory.path).result(timeout: .seconds(120))
    return (r.status, r.stdout)
}

/// `docker` for clean-up in a `defer` (synchronous there); only at a test's end.
@discardableResult
func dockerBlocking(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/docker")
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Whether dockerd answers; with CI set, a missing Docker fails the suite instead of skipping it.
func dockerAvailable() async -> Bool {
    guard FileManager.default.fileExists(atPath: "/usr/bin/docker") else { return false }
    return (try? await docker(["info", "--format", "{{.ServerVersion}}"]))?.status == 0
}

/// 3 masters and Docker workers (issue 5): the seed example end to end, adoption after a worker
/// restart, masters lost and back, bad images. No registry is reachable here, so `alpine` is the
/// local busybox test image (scripts/make-test-image.sh) under the seed example's name.
@Suite(.serialized, .heavy, .enabled("needs dockerd (CI requires it)") { await dockerAvailable() || ProcessInfo.processInfo.environment["CI"] != nil })
struct DockerClusterTests {
    static let seedBody = #"{"name": "test-task", "image": "alpine", "command": ["echo", "hello world"], "resources": {"cpu": 500, "memory": 256}}"#

    static func prepareImage() async throws {
        #expect(await dockerAvailable(), "dockerd must answer on /var/run/docker.sock (.ci/run starts it)")
        if try await docker(["image", "inspect", "alpine:latest"]).status != 0 {
            let tagged = try await docker(["tag", "orch-test/busybox:latest", "alpine:latest"])
            #expect(tagged.status == 0, "tag the test image as alpine (run scripts/make-test-image.sh first)")
        }
    }

    static func removeContainers(of cluster: ClusterHarness, workers: [String]) {
        for w in workers {
            guard let id = cluster.nodeID(ofWorker: w) else { continue }
            let ids = (try? dockerBlocking(["ps", "-aq", "--filter", "label=orchestrator.owner=\(id)"]))?.output.split(separator: "\n").map(String.init) ?? []
            if !ids.isEmpty { _ = try? dockerBlocking(["rm", "-f"] + ids) }
        }
    }

    static func task(_ cluster: ClusterHarness, _ id: String, master: Int = 0) async throws -> [String: Any] {
        let r = try await cluster.request(.GET, master: master, "/api/v1/tasks/\(id)")
        guard r.status == 200, let obj = r.json as? [String: Any] else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        return obj
    }

    static func submit(_ cluster: ClusterHarness, _ body: String, master: Int = 0) async throws -> String {
        let r = try await cluster.request(.POST, master: master, "/api/v1/tasks", body: body)
        guard r.status == 201, let id = (r.json as? [String: Any])?["id"] as? String else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        return id
    }

    @Test("the seed example runs as a container on a 2-worker cluster and its output is readable; a bad image fails with a reason while the worker keeps serving")
    func seedExampleAndBadImage() async throws {
        try await Self.prepareImage()
        let cluster = try ClusterHarness(masters: 3)
        try cluster.start()
        defer { Self.removeContainers(of: cluster, workers: ["d1", "d2"]); cluster.killAll() }
        do {
            _ = try await cluster.leaderIndex()
            try cluster.addWorker(name: "d1", runtime: "docker")
            try cluster.addWorker(name: "d2", runtime: "docker")
            try await cluster.waitUntil("2 ready nodes") { try await cluster.nodes(master: 1).filter { $0["state"] as? String == "ready" }.count == 2 }

            let id = try await Self.submit(cluster, Self.seedBody, master: 2)
            try await cluster.waitUntil("the seed task completed", timeout: .seconds(60)) {
                try await Self.task(cluster, id)["state"] as? String == "completed"
            }
            let logs = try await cluster.request(.GET, master: 1, "/api/v1/tasks/\(id)/logs")
            #expect(logs.status == 200 && logs.body == "hello world\n", "\(logs.status) \(logs.body)")

            let bad = try await Self.submit(cluster, #"{"name":"bad","image":"no-such-image-here:v1","command":["true"],"restart_policy":{"condition":"never"}}"#)
            try await cluster.waitUntil("the bad-image task failed", timeout: .seconds(60)) {
                try await Self.task(cluster, bad)["state"] as? String == "failed"
            }
            let failed = try await Self.task(cluster, bad)
            #expect((failed["reason"] as? String ?? "").contains("image not found"), "\(failed)")
            let after = try await Self.submit(cluster, #"{"name":"after","image":"alpine","command":["sh","-c","exit 3"],"restart_policy":{"condition":"never"}}"#)
            try await cluster.waitUntil("the next task failed with its exit code", timeout: .seconds(60)) {
                let t = try await Self.task(cluster, after)
                return t["state"] as? String == "failed" && t["exit_code"] as? Int == 3
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }

    @Test("a restarted worker adopts its running container (no second copy); a worker without masters keeps its task running and reports it when they return")
    func adoptionAndMastersLost() async throws {
        try await Self.prepareImage()
        let cluster = try ClusterHarness(masters: 3)
        try cluster.start()
        defer { Self.removeContainers(of: cluster, workers: ["d1"]); cluster.killAll() }
        do {
            _ = try await cluster.leaderIndex()
            let worker = try cluster.addWorker(name: "d1", runtime: "docker")
            try await cluster.waitUntil("a ready node") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let long = try await Self.submit(cluster, #"{"name":"long","image":"alpine","command":["sleep","600"],"restart_policy":{"condition":"never"}}"#)
            try await cluster.waitUntil("the task running", timeout: .seconds(60)) { try await Self.task(cluster, long)["state"] as? String == "running" }
            let owner = try #require(cluster.nodeID(ofWorker: "d1"))
            let before = try await docker(["ps", "-q", "--filter", "label=orchestrator.owner=\(owner)"]).output

            // kill -9 the worker and start it again: the same container is adopted.
            worker.kill9()
            try worker.start()
            try await cluster.waitUntil("the worker back") { try await cluster.nodes(master: 0).first?["state"] as? String == "ready" }
            let epoch = try await Self.task(cluster, long)["epoch"] as? Int
            let after = try await docker(["ps", "-q", "--filter", "label=orchestrator.owner=\(owner)"]).output
            #expect(after == before && !after.isEmpty, "one container, the same one: \(before) -> \(after)")
            #expect(try await Self.task(cluster, long)["state"] as? String == "running")

            // Cancel it: the container stops.
            let cancel = try await cluster.request(.DELETE, master: 1, "/api/v1/tasks/\(long)")
            #expect(cancel.status == 200, "\(cancel.body)")
            try await cluster.waitUntil("the container stopped", timeout: .seconds(30)) {
                try await docker(["ps", "-q", "--filter", "label=orchestrator.owner=\(owner)"]).output.isEmpty
            }

            // Every master goes away while a short task runs; it ends meanwhile; the masters come
            // back and the worker reports it.
            let short = try await Self.submit(cluster, #"{"name":"short","image":"alpine","command":["sh","-c","sleep 3; echo done"],"restart_policy":{"condition":"never"}}"#)
            try await cluster.waitUntil("the short task running", timeout: .seconds(60)) { try await Self.task(cluster, short)["state"] as? String == "running" }
            for m in cluster.masters { m.kill9() }
            try await cluster.waitUntil("the container finished while no master runs", timeout: .seconds(30)) {
                try await docker(["ps", "-q", "--filter", "label=orchestrator.owner=\(owner)"]).output.isEmpty
            }
            #expect(worker.isRunning, "the worker survives its masters")
            for m in cluster.masters { try m.start() }
            _ = try await cluster.leaderIndex()
            try await cluster.waitUntil("the ending recorded", timeout: .seconds(60)) {
                try await Self.task(cluster, short)["state"] as? String == "completed"
            }
            #expect(epoch == 1)
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
            throw error
        }
    }
}
