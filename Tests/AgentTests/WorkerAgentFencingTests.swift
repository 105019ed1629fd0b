import ClusterModel
import Foundation
import Logging
import Testing
@testable import Agent

/// A runtime in memory: what the agent asked of it, and copies a test sets up or ends.
actor FakeRuntime: TaskRuntime {
    struct Instance {
        var epoch: UInt64
        var outcome: TaskOutcome?
    }

    private(set) var instances: [String: Instance] = [:]
    private(set) var started: [RuntimeTask] = []
    private(set) var stops: [(taskID: String, grace: Duration, at: ContinuousClock.Instant)] = []
    private(set) var removed: [String] = []
    private var waiters: [String: [CheckedContinuation<TaskOutcome, Never>]] = [:]

    init(_ instances: [String: Instance] = [:]) {
        self.instances = instances
    }

    func start(_ task: RuntimeTask) async throws {
        guard instances[task.taskID] == nil else { throw RuntimeError.alreadyExists(taskID: task.taskID, epoch: task.epoch) }
        instances[task.taskID] = Instance(epoch: task.epoch)
        started.append(task)
    }

    func wait(taskID: String) async throws -> TaskOutcome {
        guard let instance = instances[taskID] else { throw RuntimeError.notFound(taskID: taskID) }
        if let outcome = instance.outcome { return outcome }
        return await withCheckedContinuation { waiters[taskID, default: []].append($0) }
    }

    func stop(taskID: String, grace: Duration) async throws {
        guard instances[taskID] != nil else { throw RuntimeError.notFound(taskID: taskID) }
        stops.append((taskID, grace, .now))
        end(taskID, .cancelled)
    }

    /// The copy ends (if it still runs) with `outcome`.
    func end(_ taskID: String, _ outcome: TaskOutcome) {
        guard var instance = instances[taskID], instance.outcome == nil else { return }
        instance.outcome = outcome
        instances[taskID] = instance
        for waiter in waiters.removeValue(forKey: taskID) ?? [] { waiter.resume(returning: outcome) }
    }

    func logs(taskID: String, limit: Int) async throws -> [UInt8] { [] }

    func list() async throws -> [RuntimeTaskInfo] {
        instances.map { RuntimeTaskInfo(taskID: $0.key, epoch: $0.value.epoch, running: $0.value.outcome == nil, outcome: $0.value.outcome) }
    }

    func remove(taskID: String) async throws {
        guard instances.removeValue(forKey: taskID) != nil else { throw RuntimeError.notFound(taskID: taskID) }
        removed.append(taskID)
    }
}

/// The agent's shell with no master to talk to (every address refuses): the lease runs out, and
/// saved reports survive restarts.
@Suite struct WorkerAgentFencingTests {
    static func agent(runtime: FakeRuntime, lease: Duration?) throws -> (WorkerAgent, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Port 1 on loopback refuses at once: no master ever answers.
        var config = WorkerConfig(masters: [HostPort(host: "127.0.0.1", port: 1)], joinToken: "", dataDir: dir,
                                  capacity: Resources(cpu: 1000, memory: 1024), listenAddress: HostPort(host: "127.0.0.1", port: 0))
        config.lease = lease
        return (WorkerAgent(config: config, runtime: runtime, logger: Logger(label: "test-worker")), dir)
    }

    static func spec(_ id: String, epoch: UInt64) -> AssignedTask {
        AssignedTask(taskID: id, epoch: epoch, spec: TaskSpec(name: id, image: "alpine", command: ["true"]))
    }

    @Test("cut off from every master, the worker stops its tasks by the end of its lease, saves their reports as lost contact, and starts nothing more")
    func fencesWhenTheLeaseEnds() async throws {
        let runtime = FakeRuntime(["a": .init(epoch: 3)])
        // 800 ms lease, 10 s stop grace: the fence begins at 640 ms with 160 ms of grace.
        let (agent, dir) = try Self.agent(runtime: runtime, lease: .milliseconds(800))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let began = ContinuousClock.now
        let run = Task { try await agent.run() }
        defer { run.cancel() }
        try await eventually("the fence stops the adopted copy", timeout: .seconds(20)) { await runtime.stops.count == 1 }
        let stop = try #require(await runtime.stops.first)
        #expect(stop.taskID == "a")
        #expect(began.duration(to: stop.at) >= .milliseconds(640), "not before the fence begins")
        #expect(stop.grace <= .milliseconds(160), "SIGKILL no later than the end of the lease")
        try await eventually("the stopped copy removed and its report kept") {
            let removed = await runtime.removed
            let reports = await agent.pendingReports
            return removed == ["a"] && reports.count == 1
        }
        let expected = TaskReport.failed(exitCode: nil, reason: Supervisor.fencedReason)
        #expect(await agent.pendingReports.map(\.report) == [expected])
        // On disk before the removal: a crash now would still report it.
        let saved = try ReportStore(directory: dir + "/reports").load().reports
        #expect(saved.map(\.taskID) == ["a"] && saved.map(\.epoch) == [3] && saved.map(\.report) == [expected])
        #expect(await agent.supervisor.fenced)
        // A stream still open to a master that lost the others: nothing starts while fenced.
        await agent.received([Self.spec("a", epoch: 3), Self.spec("b", epoch: 1)])
        #expect(await runtime.started.isEmpty)
    }

    @Test("a worker restarted after a copy ended but before a master acknowledged it neither runs that copy again nor loses its report")
    func savedReportsSurviveARestart() async throws {
        // b ended and its report was saved, then the worker died before removing it; c ended
        // while the worker was down (nothing saved yet).
        let runtime = FakeRuntime(["b": .init(epoch: 2, outcome: .exited(code: 0)), "c": .init(epoch: 1, outcome: .exited(code: 3))])
        let (agent, dir) = try Self.agent(runtime: runtime, lease: nil)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ReportStore(directory: dir + "/reports").save(PendingReport(taskID: "b", epoch: 2, report: .completed, sequence: 41))
        let run = Task { try await agent.run() }
        defer { run.cancel() }
        try await eventually("both ended copies removed") { await Set(runtime.removed) == ["b", "c"] }
        let reports = await agent.pendingReports
        try #require(reports.count == 2, "\(reports)")
        #expect(reports.map(\.taskID) == ["b", "c"], "the saved report first, and b only once")
        #expect(reports.map(\.report) == [.completed, .failed(exitCode: 3, reason: "exit code 3")])
        #expect(reports[1].sequence > reports[0].sequence, "sequence numbers continue after the saved ones")
        let saved = try ReportStore(directory: dir + "/reports").load().reports
        #expect(saved.map(\.taskID) == ["b", "c"])
        // The masters have not applied the report yet, so a stream still lists both epochs.
        await agent.received([Self.spec("b", epoch: 2), Self.spec("c", epoch: 1)])
        #expect(await runtime.started.isEmpty, "no copy runs twice")
        // A restart by policy (a newer epoch) does run.
        await agent.received([Self.spec("b", epoch: 3)])
        try await eventually("the new epoch started") { await runtime.started.map(\.epoch) == [3] }
    }
}
