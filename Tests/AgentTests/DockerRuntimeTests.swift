@testable import Agent
import Foundation
import Testing
import TestGate

/// DockerRuntime against the real dockerd. Serialized: together they would load a 2-core machine
/// that other builds share, and timing checks (grace periods) need some headroom.
@Suite("DockerRuntime", .serialized, .heavy, .enabled(if: DockerTestEnvironment.enabled, DockerTestEnvironment.skipComment))
struct DockerRuntimeTests {
    @Test func exitCodes() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.exitCodes) }
    @Test func envAndCommand() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.envAndCommandReachTheTask) }
    @Test func logsTail() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.logsKeepTheTail) }
    @Test func logFrames() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.logFramesAndFollow) }
    @Test func stopSendsSIGTERM() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.stopSendsSIGTERM) }
    @Test func stopKillsAfterGrace() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.stopKillsAfterGrace) }
    @Test func killedFromOutside() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.killedFromOutside) }
    @Test func adoption() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.adoption) }
    @Test func startTwiceAndRemove() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.startTwiceAndRemove) }
    @Test func removeRunning() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.removeRunning) }
    @Test func waitCancellation() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.waitHonoursCancellation) }
    @Test func invalidSpecs() async throws { try await RuntimeHarness.docker().run(RuntimeScenarios.invalidSpecs) }

    /// A task that allocates past its memory limit is reported OOM killed (busybox `tail` buffers
    /// a newline-free stream in memory).
    @Test func memoryLimitIsEnforced() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("oom")
            var task = h.task(id, ["sh", "-c", "head -c 200m /dev/zero | tail"])
            task.memoryMB = 16
            try await runtime.start(task)
            let outcome = try await withTimeout(.seconds(120), "wait") { try await runtime.wait(taskID: id) }
            #expect(outcome == .oomKilled(code: 137))
            #expect(try await runtime.list().first { $0.taskID == id }?.outcome == .oomKilled(code: 137))

            // The same allocation within a generous limit completes.
            let roomy = uniqueTaskID("no-oom")
            var fits = h.task(roomy, ["sh", "-c", "head -c 8m /dev/zero | tail | wc -c"])
            fits.memoryMB = 256
            try await runtime.start(fits)
            #expect(try await withTimeout(.seconds(120), "wait") { try await runtime.wait(taskID: roomy) } == .exited(code: 0))
            #expect(try await runtime.logs(taskID: roomy).text.trimmingCharacters(in: .whitespacesAndNewlines) == "8388608")
        }
    }

    /// A worker in a container offers the Docker host's capacity: here dockerd runs on this
    /// machine, so the engine's `NCPU`/`MemTotal` are this machine's CPUs and memory.
    @Test func hostCapacityIsTheEngines() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make() as! DockerRuntime
            let capacity = try await runtime.hostCapacity()
            #expect(capacity.cpu == ProcessInfo.processInfo.activeProcessorCount * 1000)
            let physical = Int(ProcessInfo.processInfo.physicalMemory / 1_048_576)
            #expect(abs(capacity.memory - physical) <= physical / 50, "engine \(capacity.memory) MB, machine \(physical) MB")
        }
    }

    /// CPU and memory limits, labels and name as Docker shows them.
    @Test func limitsLabelsAndName() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make() as! DockerRuntime
            let id = uniqueTaskID("limits")
            var task = h.task(id, ["sh", "-c", "echo ok"])
            task.cpuMillicores = 500
            task.memoryMB = 64
            task.epoch = 3
            task.name = "limits test"
            try await runtime.start(task)
            let info = try await runtime.inspect(taskID: id)
            #expect(info.hostConfig.nanoCpus == Int64(500_000_000))
            #expect(info.hostConfig.memory == Int64(64 * 1024 * 1024))
            #expect(info.hostConfig.memorySwap == Int64(64 * 1024 * 1024))
            #expect(info.config.labels?[RuntimeLabel.taskID] == id)
            #expect(info.config.labels?[RuntimeLabel.epoch] == "3")
            #expect(info.config.labels?[RuntimeLabel.owner] == runtime.owner)
            #expect(info.config.labels?[RuntimeLabel.taskName] == "limits test")
            #expect(info.name == "/orch-\(runtime.owner)-\(id)-3")
            #expect(try await runtime.wait(taskID: id) == .exited(code: 0))

            // Docker refuses NanoCpus outside 0.01 core ... host CPUs: the runtime clamps.
            let tiny = uniqueTaskID("tiny-cpu")
            var small = h.task(tiny, ["true"])
            small.cpuMillicores = 1
            try await runtime.start(small)
            #expect(try await runtime.inspect(taskID: tiny).hostConfig.nanoCpus == Int64(10_000_000))
            #expect(try await runtime.wait(taskID: tiny) == .exited(code: 0))
            let huge = uniqueTaskID("huge-cpu")
            var large = h.task(huge, ["true"])
            large.cpuMillicores = 64_000
            try await runtime.start(large)
            let nanoCpus = try #require(try await runtime.inspect(taskID: huge).hostConfig.nanoCpus)
            #expect(nanoCpus > 0 && nanoCpus <= Int64(ProcessInfo.processInfo.activeProcessorCount) * 1_000_000_000 && nanoCpus < 64_000_000_000)
            #expect(try await runtime.wait(taskID: huge) == .exited(code: 0))
        }
    }

    /// Docker, Kubernetes and Nomad run the image's default command when a task names none.
    @Test func emptyCommandRunsTheImageDefault() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("default-cmd")
            try await runtime.start(h.task(id, []))
            #expect(try await runtime.wait(taskID: id) == .exited(code: 0))
            #expect(try await runtime.logs(taskID: id).text == "orch-test default command\n")
        }
    }

    /// An image neither present nor pullable fails the start quickly with `.imageNotFound`.
    @Test func imageNotFound() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make()
            let id = uniqueTaskID("no-image")
            var task = h.task(id, ["true"])
            task.image = "orch-test/not-there:\(UUID().uuidString.prefix(8).lowercased())"
            let began = ContinuousClock.now
            let error = await #expect(throws: RuntimeError.self) { try await runtime.start(task) }
            #expect(ContinuousClock.now - began < .seconds(60))
            #expect(error?.failureReason == .imageNotFound)
            #expect(error?.description.contains(task.image) == true, "\(String(describing: error))")
            if case .failed(.imageNotFound, let message)? = error?.outcome {
                #expect(!message.isEmpty)
            } else {
                Issue.record("outcome \(String(describing: error?.outcome))")
            }
            #expect(try await runtime.list().isEmpty)
        }
    }

    /// Docker's own refusals come back typed, with Docker's message.
    @Test func dockerRefusalsCarryItsMessage() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make()
            var task = h.task(uniqueTaskID("tiny-mem"), ["true"])
            task.memoryMB = 4  // Docker's minimum is 6 MB
            let error = await #expect(throws: RuntimeError.self) { try await runtime.start(task) }
            #expect(error?.failureReason == .invalidSpec)
            #expect(error?.description.contains("6MB") == true, "\(String(describing: error))")
            #expect(try await runtime.list().isEmpty)
        }
    }

    /// Start latency (create + start of the busybox image), median of 20: a measurement, not a
    /// check. Run with ORCH_AGENT_BENCH=1.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["ORCH_AGENT_BENCH"] != nil))
    func startLatency() async throws {
        try await RuntimeHarness.docker().run { h in
            let runtime = try await h.make()
            var samples: [Duration] = []
            for n in 0..<20 {
                let id = "bench-\(n)"
                let began = ContinuousClock.now
                try await runtime.start(h.task(id, ["true"]))
                samples.append(ContinuousClock.now - began)
                #expect(try await runtime.wait(taskID: id) == .exited(code: 0))
                try await runtime.remove(taskID: id)
            }
            let sorted = samples.sorted()
            print("DockerRuntime.start of \(DockerTestEnvironment.image), 20 runs: median \(sorted[10]), min \(sorted[0]), max \(sorted[19])")
        }
    }
}

/// What the runtime says when Docker is not there at all: no dockerd needed.
@Suite("DockerRuntime without Docker")
struct DockerRuntimeUnreachableTests {
    @Test func missingSocketIsATypedError() async throws {
        let path = "/nonexistent-\(UUID().uuidString.prefix(8))/docker.sock"
        let runtime = DockerRuntime(owner: "agent-test", configuration: .init(socketPath: path))
        let ping = await #expect(throws: RuntimeError.self) { try await runtime.ping() }
        #expect(ping == .dockerUnreachable(socketPath: path, message: "no such socket"))
        #expect(ping?.description.contains(path) == true)
        let task = RuntimeTask(taskID: "t1", epoch: 1, name: "t", image: "orch-test/busybox:latest", command: ["true"])
        let start = await #expect(throws: RuntimeError.self) { try await runtime.start(task) }
        #expect(start?.failureReason == .runtimeError)
        if case .dockerUnreachable(path, _)? = start {} else { Issue.record("\(String(describing: start))") }
        await #expect(throws: RuntimeError.self) { try await runtime.list() }
        await #expect(throws: RuntimeError.self) { try await runtime.wait(taskID: "t1") }
        try await runtime.shutdown()
    }

    /// A path that exists but is no socket (dockerd gone, a stale file).
    @Test func socketThatRefusesIsATypedError() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-socket-\(UUID().uuidString.prefix(8))").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let runtime = DockerRuntime(owner: "agent-test", configuration: .init(socketPath: path))
        let began = ContinuousClock.now
        let error = await #expect(throws: RuntimeError.self) { try await runtime.ping() }
        #expect(ContinuousClock.now - began < .seconds(30))
        if case .dockerUnreachable(path, _)? = error {} else { Issue.record("\(String(describing: error))") }
        try await runtime.shutdown()
    }

    /// Bad references and commands are refused before Docker is asked (here it could not answer).
    @Test func invalidSpecsAreRefusedLocally() async throws {
        let runtime = DockerRuntime(owner: "agent-test", configuration: .init(socketPath: "/nonexistent/docker.sock"))
        for image in ["", "UPPER/case", "a b", "image:", "x@sha256:123"] {
            let task = RuntimeTask(taskID: "t", epoch: 1, name: "t", image: image, command: ["true"])
            let error = await #expect(throws: RuntimeError.self, "\(image)") { try await runtime.start(task) }
            #expect(error?.failureReason == .invalidSpec, "\(image): \(String(describing: error))")
        }
        let badCommand = RuntimeTask(taskID: "t", epoch: 1, name: "t", image: "busybox", command: [""])
        let error = await #expect(throws: RuntimeError.self) { try await runtime.start(badCommand) }
        #expect(error?.failureReason == .invalidSpec)
        try await runtime.shutdown()
    }
}
