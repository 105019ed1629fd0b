@testable import Agent
import Foundation
import Testing

/// The life-cycle checks every `TaskRuntime` must pass; the Docker and process suites run each of
/// them against their runtime. Commands are POSIX `sh` (dash on the host, busybox in the image).
enum RuntimeScenarios {
    /// Bounds of a single runtime call; far above what they need, so only a hang trips them.
    static let callTimeout = Duration.seconds(120)

    static func exitCodes(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let ok = uniqueTaskID("exit0")
        let bad = uniqueTaskID("exit42")
        try await runtime.start(h.task(ok, ["sh", "-c", "exit 0"]))
        try await runtime.start(h.task(bad, ["sh", "-c", "exit 42"]))
        let first = try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: ok) }
        let second = try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: bad) }
        #expect(first == .exited(code: 0))
        #expect(first.isSuccess)
        #expect(second == .exited(code: 42))
        // Waiting again for an ended task answers the same at once.
        #expect(try await runtime.wait(taskID: bad) == .exited(code: 42))
        let listed = try await runtime.list().filter { $0.taskID == ok || $0.taskID == bad }
        #expect(listed.map(\.taskID).sorted() == [ok, bad].sorted())
        #expect(listed.allSatisfy { !$0.running })
        #expect(Set(listed.compactMap(\.outcome)) == [.exited(code: 0), .exited(code: 42)])
    }

    static func envAndCommandReachTheTask(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("env")
        var task = h.task(id, ["sh", "-c", #"echo "args=$0 $1"; echo "GREETING=$GREETING"; echo "EMPTY=[$EMPTY]"; echo to-stderr >&2"#,
                               "first arg", "second"])
        task.env = ["GREETING": "hello world", "EMPTY": ""]
        try await runtime.start(task)
        #expect(try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))
        let output = try await runtime.logs(taskID: id).text
        #expect(output.contains("args=first arg second\n"), "\(output)")
        #expect(output.contains("GREETING=hello world\n"), "\(output)")
        #expect(output.contains("EMPTY=[]\n"), "\(output)")
        #expect(output.contains("to-stderr\n"), "\(output)")
    }

    /// `logs` returns exactly the last `limit` bytes, for limits below, near and above the output.
    static func logsKeepTheTail(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("logs")
        let count = 3000
        try await runtime.start(h.task(id, ["sh", "-c", "i=0; while [ $i -lt \(count) ]; do echo \"line $i\"; i=$((i+1)); done"]))
        #expect(try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))
        let expected = Array((0..<count).map { "line \($0)\n" }.joined().utf8)
        for limit in [1, 100, 20_000, expected.count, 1 << 20] {
            let tail = try await runtime.logs(taskID: id, limit: limit)
            #expect(tail == Array(expected.suffix(limit)), "limit \(limit): got \(tail.count) bytes")
        }
        #expect(try await runtime.logs(taskID: id, limit: 0) == [])
        #expect(try await runtime.logs(taskID: id) == Array(expected.suffix(defaultLogLimit)))
    }

    /// stdout and stderr are told apart, selected by stream, `tail` and `since`; a follow gets the
    /// past output, then new output as written, then the instance's outcome once all of it came.
    static func logFramesAndFollow(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("frames")
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("gate-\(id)").path
        defer { try? FileManager.default.removeItem(atPath: gate) }
        // Docker tasks cannot see the host's files: the gate is "wait a while" there, long enough
        // for the follow to begin (the checks below would fail, not pass, if it began too late).
        let wait = h.name == "docker" ? "sleep 6" : "while [ ! -e \(gate) ]; do sleep 0.05; done"
        try await runtime.start(h.task(id, ["sh", "-c", "echo out1; echo err1 >&2; echo out2; \(wait); echo late-out; echo late-err >&2; exit 3"]))
        try await eventually("the first output") {
            try await Self.frames(runtime, id, LogQuery()).map(\.text).joined().contains("out2")
        }
        let all = try await Self.frames(runtime, id, LogQuery())
        #expect(all.filter { $0.stream == .stdout }.map(\.text).joined() == "out1\nout2\n")
        #expect(all.filter { $0.stream == .stderr }.map(\.text).joined() == "err1\n")
        #expect(try await Self.frames(runtime, id, LogQuery(streams: [.stderr])).map(\.text).joined() == "err1\n")
        let lastOut = try await Self.frames(runtime, id, LogQuery(tailLines: 1, streams: [.stdout]))
        #expect(lastOut.map(\.text).joined() == "out2\n", "\(lastOut)")
        let future = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        #expect(try await Self.frames(runtime, id, LogQuery(sinceUnixMs: future)).isEmpty)
        let start = all.map(\.unixMs).min() ?? 0
        #expect(try await Self.frames(runtime, id, LogQuery(sinceUnixMs: start)).map(\.text).joined().count == "out1\nerr1\nout2\n".count)

        let collected = FrameBox()
        let follow = Task {
            try await runtime.readLogs(taskID: id, query: LogQuery(follow: true, tailLines: 1, streams: [.stdout])) { await collected.add($0) }
        }
        try await eventually("the follow's past output") { await collected.text.hasPrefix("out2\n") }
        FileManager.default.createFile(atPath: gate, contents: Data())
        let outcome = try await withTimeout(callTimeout, "follow") { try await follow.value }
        #expect(outcome == .exited(code: 3))
        let followed = await collected.frames
        #expect(followed.map(\.text).joined() == "out2\nlate-out\n", "stderr was not asked for: \(followed)")
        #expect(try await runtime.wait(taskID: id) == .exited(code: 3))
    }

    static func frames(_ runtime: any TaskRuntime, _ id: String, _ query: LogQuery) async throws -> [LogFrame] {
        let box = FrameBox()
        _ = try await runtime.readLogs(taskID: id, query: query) { await box.add($0) }
        return await box.frames
    }

    /// A task that handles SIGTERM ends on it, well before the grace would run out.
    static func stopSendsSIGTERM(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("term")
        try await runtime.start(h.task(id, ["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; sleep 1000 & wait"]))
        try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
        let began = ContinuousClock.now
        try await withTimeout(callTimeout, "stop") { try await runtime.stop(taskID: id, grace: .seconds(60)) }
        let took = ContinuousClock.now - began
        #expect(took < .seconds(30), "stop took \(took): SIGTERM was not honoured before the grace")
        #expect(try await runtime.wait(taskID: id) == .cancelled)
        #expect(try await runtime.logs(taskID: id).text.contains("got-term"))
        // Stopping an ended task changes nothing.
        try await runtime.stop(taskID: id, grace: .seconds(1))
        #expect(try await runtime.wait(taskID: id) == .cancelled)
    }

    /// A task that ignores SIGTERM is killed once the grace has passed.
    static func stopKillsAfterGrace(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("kill")
        try await runtime.start(h.task(id, ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]))
        try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
        let began = ContinuousClock.now
        try await withTimeout(callTimeout, "stop") { try await runtime.stop(taskID: id, grace: .seconds(1)) }
        let took = ContinuousClock.now - began
        #expect(took >= .seconds(1), "stop returned after \(took), before the grace: the task was not given it")
        #expect(took < .seconds(60), "stop took \(took)")
        #expect(try await runtime.wait(taskID: id) == .cancelled)
        let info = try await runtime.list().first { $0.taskID == id }
        #expect(info?.running == false)
        #expect(info?.outcome == .cancelled)
    }

    /// A task that ends by a signal from elsewhere is not "cancelled": 128 + the signal.
    static func killedFromOutside(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("outside")
        try await runtime.start(h.task(id, ["sh", "-c", "echo ready; while true; do sleep 1; done"]))
        try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
        try await h.signal(id, SIGKILL)
        #expect(try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: id) } == .exited(code: 137))
    }

    /// A new runtime object with the same identity (a restarted worker) finds the running task,
    /// waits for it and gets its exit code; it can also stop what it adopted.
    static func adoption(_ h: RuntimeHarness) async throws {
        let first = try await h.make()
        let ends = uniqueTaskID("adopt-exit")
        let stopped = uniqueTaskID("adopt-stop")
        try await first.start(h.task(ends, ["sh", "-c", "trap 'echo bye; exit 7' USR1; echo ready; sleep 1000 & wait"]))
        var second = h.task(stopped, ["sh", "-c", "echo ready; while true; do sleep 1; done"])
        second.epoch = 9
        try await first.start(second)
        for id in [ends, stopped] {
            try await eventually("\(id) to be ready") { try await first.logs(taskID: id).text.contains("ready") }
        }

        let restarted = try await h.make()
        let adopted = try await restarted.list().filter { [ends, stopped].contains($0.taskID) }
        #expect(adopted.count == 2)
        #expect(adopted.allSatisfy { $0.running && $0.outcome == nil })
        #expect(adopted.first { $0.taskID == stopped }?.epoch == 9)
        #expect(adopted.first { $0.taskID == ends }?.epoch == 1)

        let waiter = Task { try await restarted.wait(taskID: ends) }
        try await h.signal(ends, SIGUSR1)
        let outcome = try await withTimeout(callTimeout, "wait for the adopted task") { try await waiter.value }
        #expect(outcome == .exited(code: 7))
        #expect(try await restarted.logs(taskID: ends).text.contains("bye"))

        // A container's init process ignores SIGTERM without a handler: this one ends at SIGKILL.
        try await withTimeout(callTimeout, "stop") { try await restarted.stop(taskID: stopped, grace: .seconds(1)) }
        #expect(try await restarted.wait(taskID: stopped) == .cancelled)
        // The original runtime object sees the same ending.
        #expect(try await first.wait(taskID: stopped) == .cancelled)
    }

    /// One instance per task id; `remove` frees the id, and everything about it is then unknown.
    static func startTwiceAndRemove(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("remove")
        try await runtime.start(h.task(id, ["sh", "-c", "echo first"]))
        var again = h.task(id, ["sh", "-c", "echo second"])
        again.epoch = 2
        await #expect(throws: RuntimeError.alreadyExists(taskID: id, epoch: 1)) { try await runtime.start(again) }
        #expect(try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))

        try await runtime.remove(taskID: id)
        #expect(try await runtime.list().contains { $0.taskID == id } == false)
        await #expect(throws: RuntimeError.notFound(taskID: id)) { try await runtime.wait(taskID: id) }
        await #expect(throws: RuntimeError.notFound(taskID: id)) { try await runtime.logs(taskID: id) }
        await #expect(throws: RuntimeError.notFound(taskID: id)) { try await runtime.stop(taskID: id, grace: .zero) }
        await #expect(throws: RuntimeError.notFound(taskID: id)) { try await runtime.remove(taskID: id) }

        try await runtime.start(again)
        #expect(try await withTimeout(callTimeout, "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))
        #expect(try await runtime.logs(taskID: id).text == "second\n")
        #expect(try await runtime.list().first { $0.taskID == id }?.epoch == 2)
        try await runtime.remove(taskID: id)
    }

    /// Removing a running task kills it.
    static func removeRunning(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("rm-running")
        try await runtime.start(h.task(id, ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]))
        try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
        try await withTimeout(callTimeout, "remove") { try await runtime.remove(taskID: id) }
        #expect(try await runtime.list().contains { $0.taskID == id } == false)
    }

    /// A cancelled `wait` returns promptly; the task keeps running.
    static func waitHonoursCancellation(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        let id = uniqueTaskID("cancel-wait")
        try await runtime.start(h.task(id, ["sh", "-c", "echo ready; while true; do sleep 1; done"]))
        let waiter = Task { try await runtime.wait(taskID: id) }
        try await eventually("the task to be ready") { try await runtime.logs(taskID: id).text.contains("ready") }
        waiter.cancel()
        let result = try await withTimeout(callTimeout, "the cancelled wait") { await waiter.result }
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(try await runtime.list().first { $0.taskID == id }?.running == true)
        try await runtime.stop(taskID: id, grace: .zero)
    }

    static func invalidSpecs(_ h: RuntimeHarness) async throws {
        let runtime = try await h.make()
        var negative = h.task(uniqueTaskID("neg"), ["true"])
        negative.memoryMB = -1
        let negativeError = await #expect(throws: RuntimeError.self) { try await runtime.start(negative) }
        #expect(negativeError?.failureReason == .invalidSpec)
        var badEnv = h.task(uniqueTaskID("env"), ["true"])
        badEnv.env = ["A=B": "x"]
        let envError = await #expect(throws: RuntimeError.self) { try await runtime.start(badEnv) }
        #expect(envError?.failureReason == .invalidSpec)
        let missing = h.task(uniqueTaskID("nocmd"), ["no-such-command-anywhere"])
        let missingError = await #expect(throws: RuntimeError.self) { try await runtime.start(missing) }
        #expect(missingError?.failureReason == .invalidSpec)
        #expect(missingError?.description.contains("no-such-command-anywhere") == true, "\(String(describing: missingError))")
        if let missingError {
            #expect(missingError.outcome == .failed(reason: .invalidSpec, message: missingError.description))
        }
        // Nothing is left of the refused tasks.
        let ids = [negative.taskID, badEnv.taskID, missing.taskID]
        #expect(try await runtime.list().contains { ids.contains($0.taskID) } == false)
    }
}

/// Frames collected by a test's `emit`.
actor FrameBox {
    var frames: [LogFrame] = []
    func add(_ batch: [LogFrame]) { frames.append(contentsOf: batch) }
    var text: String { frames.map(\.text).joined() }
}

extension LogFrame {
    var text: String { String(decoding: bytes, as: UTF8.self) }
}
