@testable import Agent
import Foundation
import Synchronization
import Testing

extension RuntimeHarness {
    /// Process runtimes on a fresh temporary data directory.
    static func process() throws -> RuntimeHarness {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("agent-test-\(UUID().uuidString.prefix(8))").path
        return RuntimeHarness(
            name: "process",
            make: { try ProcessRuntime(directory: directory) },
            task: { id, command in RuntimeTask(taskID: id, epoch: 1, name: "test", image: "ignored", command: command) },
            signal: { taskID, signal in
                let files = ProcessTaskFiles(directory: directory + "/tasks/" + ProcessTaskFiles.directoryName(for: taskID))
                guard let record = try files.readRecord() else { throw TestFailure("no record for \(taskID)") }
                #expect(try ProcessSystem.signalGroup(record.pid, signal))
            },
            cleanUp: {
                if let runtime = try? ProcessRuntime(directory: directory), let left = try? await runtime.list() {
                    for info in left { try? await runtime.remove(taskID: info.taskID) }
                }
                try? FileManager.default.removeItem(atPath: directory)
            })
    }
}

@Suite("ProcessRuntime")
struct ProcessRuntimeTests {
    @Test func exitCodes() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.exitCodes) }
    @Test func envAndCommand() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.envAndCommandReachTheTask) }
    @Test func logsTail() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.logsKeepTheTail) }
    @Test func logFrames() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.logFramesAndFollow) }
    @Test func stopSendsSIGTERM() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.stopSendsSIGTERM) }
    @Test func stopKillsAfterGrace() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.stopKillsAfterGrace) }
    @Test func killedFromOutside() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.killedFromOutside) }
    @Test func adoption() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.adoption) }
    @Test func startTwiceAndRemove() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.startTwiceAndRemove) }
    @Test func removeRunning() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.removeRunning) }
    @Test func waitCancellation() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.waitHonoursCancellation) }
    @Test func invalidSpecs() async throws { try await RuntimeHarness.process().run(RuntimeScenarios.invalidSpecs) }

    /// Without an image there is no default command to fall back to.
    @Test func emptyCommandIsRefused() async throws {
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let error = await #expect(throws: RuntimeError.self) { try await runtime.start(h.task(uniqueTaskID("empty"), [])) }
            #expect(error?.failureReason == .invalidSpec)
            #expect(try await runtime.list().isEmpty)
        }
    }

    /// Tasks get a minimal environment: PATH and their own variables, none of the worker's.
    @Test func environmentIsNotInherited() async throws {
        setenv("ORCH_AGENT_TEST_SECRET", "do-not-leak", 1)
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("env-min")
            var task = h.task(id, ["env"])
            task.env = ["MINE": "1"]
            try await runtime.start(task)
            #expect(try await runtime.wait(taskID: id) == .exited(code: 0))
            let lines = Set(try await runtime.logs(taskID: id).text.split(separator: "\n").map(String.init))
            #expect(lines.contains("PATH=\(ProcessRuntime.defaultPath)"))
            #expect(lines.contains("MINE=1"))
            #expect(!lines.contains { $0.hasPrefix("ORCH_AGENT_TEST_SECRET=") })
            // The wrapper's own variables aside, nothing else.
            #expect(lines.filter { !$0.hasPrefix("PWD=") && !$0.hasPrefix("OLDPWD=") }.count == 2, "\(lines)")

            // A task's PATH replaces the default, also for finding the executable.
            let custom = uniqueTaskID("path")
            var withPath = h.task(custom, ["sh", "-c", "echo $PATH"])
            withPath.env = ["PATH": "/bin"]
            try await runtime.start(withPath)
            #expect(try await runtime.wait(taskID: custom) == .exited(code: 0))
            #expect(try await runtime.logs(taskID: custom).text == "/bin\n")
        }
    }

    /// The worker ignores SIGPIPE (as NIO does); a task must not inherit that: `yes | head` ends.
    @Test func signalDispositionsAreReset() async throws {
        signal(SIGPIPE, SIG_IGN)
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("pipe")
            try await runtime.start(h.task(id, ["sh", "-c", "yes | head -n 3; echo done"]))
            let outcome = try await withTimeout(.seconds(60), "wait") { try await runtime.wait(taskID: id) }
            #expect(outcome == .exited(code: 0))
            #expect(try await runtime.logs(taskID: id).text == "y\ny\ny\ndone\n")
        }
    }

    /// Descriptors of the worker (a listening socket, say) do not leak into tasks.
    @Test func descriptorsAreNotInherited() async throws {
        // A descriptor without O_CLOEXEC, at a number `ls` itself will not use.
        let source = open("/dev/null", O_RDONLY)
        let leaked = dup2(source, 987)
        close(source)
        #expect(leaked == 987)
        defer { close(leaked) }
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("fds")
            try await runtime.start(h.task(id, ["ls", "/proc/self/fd"]))
            #expect(try await runtime.wait(taskID: id) == .exited(code: 0))
            let fds = try await runtime.logs(taskID: id).text.split(separator: "\n").compactMap { Int($0) }
            #expect(fds.contains(1) && fds.contains(2), "\(fds)")
            #expect(!fds.contains(987), "\(fds)")
        }
    }

    /// A recycled pid (alive, but with another start time) is not taken for the task.
    @Test func recycledPidIsNotAdopted() async throws {
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("recycled")
            try await runtime.start(h.task(id, ["sh", "-c", "echo ready; while true; do sleep 1; done"]))
            try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
            try await h.signal(id, SIGKILL)
            #expect(try await runtime.wait(taskID: id) == .exited(code: 137))

            // Point the record at a live process (this one) whose start time differs.
            let files = ProcessTaskFiles(directory: (runtime as! ProcessRuntime).directory + "/tasks/"
                + ProcessTaskFiles.directoryName(for: id))
            var record = try #require(try files.readRecord())
            let me = try #require(ProcessSystem.processStat(getpid()))
            record.pid = getpid()
            record.startTicks = me.startTicks + 1
            try files.write(record)

            let restarted = try await h.make()
            let info = try #require(try await restarted.list().first { $0.taskID == id })
            #expect(info.running == false)
            if case .failed(.runtimeError, _)? = info.outcome {} else { Issue.record("unexpected outcome \(String(describing: info.outcome))") }
            // The live process behind the pid is left alone by stop.
            try await restarted.stop(taskID: id, grace: .zero)
            #expect(try await restarted.wait(taskID: id) == info.outcome)
        }
    }

    /// Task ids become directory names that map back to one id only.
    @Test func directoryNames() {
        #expect(ProcessTaskFiles.directoryName(for: "abc-DEF_1") == "abc-DEF_1")
        #expect(ProcessTaskFiles.directoryName(for: "..") == "%2E%2E")
        #expect(ProcessTaskFiles.directoryName(for: "a/b c%") == "a%2Fb%20c%25")
        let long = String(repeating: "x", count: 190)
        let longName = ProcessTaskFiles.directoryName(for: long)
        #expect(longName.utf8.count < 200)
        #expect(longName != ProcessTaskFiles.directoryName(for: long + "y"))
    }

    @Test func waitStatusDecoding() {
        #expect(ProcessSystem.exitCode(fromWaitStatus: 0) == 0)
        #expect(ProcessSystem.exitCode(fromWaitStatus: 42 << 8) == 42)
        #expect(ProcessSystem.exitCode(fromWaitStatus: 9) == 137)
        #expect(ProcessSystem.exitCode(fromWaitStatus: 15 | 0x80) == 143)  // with the core-dump bit
    }

    /// Many short tasks at once: the runtime the integration tests lean on stays correct under load.
    @Test func manyConcurrentTasks() async throws {
        try await RuntimeHarness.process().run { h in
            let runtime = try await h.make()
            let ids = (0..<40).map { uniqueTaskID("many\($0)") }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (n, id) in ids.enumerated() {
                    group.addTask {
                        try await runtime.start(h.task(id, ["sh", "-c", "echo \(n); exit \(n % 5)"]))
                        let outcome = try await withTimeout(.seconds(120), "wait") { try await runtime.wait(taskID: id) }
                        #expect(outcome == .exited(code: Int32(n % 5)))
                        #expect(try await runtime.logs(taskID: id).text == "\(n)\n")
                        try await runtime.remove(taskID: id)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await runtime.list().isEmpty)
        }
    }
}
