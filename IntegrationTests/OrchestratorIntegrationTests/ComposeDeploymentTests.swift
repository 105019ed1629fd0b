import Foundation
import Testing
import TestGate

/// The container deployment end to end: `IntegrationTests/compose/compose-e2e.sh` over the images
/// of `scripts/build-images.sh` (`.ci/run` builds them from its one debug build). The script does
/// the checks, each a poll with a deadline, and exits non-zero with the reason; this test runs it
/// within a bound and shows its output.
@Suite(.serialized, .heavy) struct ComposeDeploymentTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = repository.appendingPathComponent("IntegrationTests/compose/compose-e2e.sh").path

    /// Under CI a missing engine, compose or image fails the test; elsewhere it is skipped.
    static let isCI: Bool = {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !["", "0", "false", "no"].contains(value.lowercased())
    }()

    /// What is missing for the test to run, if anything. Asked without blocking a cooperative
    /// thread: the suite's `.enabled` check runs while every suite starts, and five commands (one
    /// of them the Python docker-compose) held one of CI's two pool threads for seconds, which
    /// starved the in-process Raft clusters starting beside it.
    static func missing() async -> String? {
        if await check(["docker", "info"]) != 0 { return "dockerd does not answer" }
        if await check(["docker-compose", "version"]) != 0 { return "docker-compose is not installed" }
        for image in ["orchestrator:latest", "orchestrator-etcd:3.4", "alpine"] where await check(["docker", "image", "inspect", image]) != 0 {
            return "image \(image) is missing (scripts/build-images.sh builds it)"
        }
        return nil
    }

    static func canRun() async -> Bool {
        if isCI { return true }
        return await missing() == nil
    }

    /// `arguments` through /usr/bin/env, waited for by polling; its exit status (127: not run).
    static func check(_ arguments: [String]) async -> Int32 {
        guard let process = try? CLIProcess(binary: URL(fileURLWithPath: "/usr/bin/env"), arguments: arguments,
                                            environment: ProcessInfo.processInfo.environment,
                                            directory: FileManager.default.temporaryDirectory.path) else { return 127 }
        return (try? await process.result(timeout: .seconds(120)).status) ?? 127
    }

    @Test("compose: 3 masters and 3 workers run the seed task through every master, survive a leader kill and a graceful leader stop under writes, come down clean; the etcd variant too",
          .enabled("needs dockerd, docker-compose and the images of scripts/build-images.sh", { await ComposeDeploymentTests.canRun() }),
          .timeLimit(.minutes(20)))
    func composeEndToEnd() async throws {
        if let missing = await Self.missing() { Issue.record("cannot run the compose end-to-end test: \(missing)"); return }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("compose-e2e-\(UUID().uuidString.prefix(8)).log").path
        let result = try await Self.runScript(output: output, limit: .seconds(900))
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        print(text.split(separator: "\n").filter { $0.contains(": ") && ($0.contains(" s") || $0.contains("passed")) }.joined(separator: "\n"))
        #expect(result == 0, "compose-e2e.sh exited \(result):\n\(text.suffix(6000))")
        #expect(text.contains("0 failed"), "\(text.suffix(3000))")
    }

    /// Runs the script with its output in `output`; kills it (and so its `down -v` trap runs) when
    /// `limit` passes. Returns its exit status.
    static func runScript(output: String, limit: Duration) async throws -> Int32 {
        FileManager.default.createFile(atPath: output, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        defer { try? log.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script]
        process.currentDirectoryURL = repository
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                process.terminate()
                let grace = ContinuousClock.now + .seconds(120)
                while process.isRunning, ContinuousClock.now < grace { try await Task.sleep(for: .milliseconds(200)) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
