import ClusterModel
import Testing
@testable import Agent

@Suite struct SupervisorTests {
    static func task(_ id: String, epoch: UInt64) -> AssignedTask {
        AssignedTask(taskID: id, epoch: epoch, spec: TaskSpec(name: id, image: "alpine", command: ["true"]))
    }

    @Test("a new assignment starts; running is reported once; a clean exit reports completed and removes")
    func lifecycle() {
        var s = Supervisor()
        #expect(s.assignments([Self.task("a", epoch: 1)]) == [.start(Self.task("a", epoch: 1))])
        #expect(s.assignments([Self.task("a", epoch: 1)]) == [], "the same set again does nothing")
        #expect(s.started(taskID: "a", epoch: 1) == [.report(taskID: "a", epoch: 1, .running)])
        #expect(s.running.map(\.taskID) == ["a"])
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .exited(code: 0)) == [.remove(taskID: "a"), .report(taskID: "a", epoch: 1, .completed)])
        #expect(s.running.isEmpty)
    }

    @Test("an assignment older than one seen is never started")
    func olderEpochIgnored() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 5)])
        _ = s.started(taskID: "a", epoch: 5)
        _ = s.ended(taskID: "a", epoch: 5, outcome: .exited(code: 1))
        // A stale stream replays epoch 4: nothing starts.
        #expect(s.assignments([Self.task("a", epoch: 4)]) == [])
    }

    @Test("a withdrawn task is stopped and its ending is not reported")
    func withdrawn() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1), Self.task("b", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        #expect(s.assignments([Self.task("b", epoch: 1)]) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled) == [.remove(taskID: "a")])
    }

    @Test("a newer epoch replaces a running copy only after the old copy ended")
    func replacement() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        #expect(s.assignments([Self.task("a", epoch: 2)]) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled) == [.remove(taskID: "a"), .start(Self.task("a", epoch: 2))])
        #expect(s.started(taskID: "a", epoch: 2) == [.report(taskID: "a", epoch: 2, .running)])
    }

    @Test("outcomes map to reports with reasons")
    func reports() {
        #expect(Supervisor.report(for: .exited(code: 3)) == .failed(exitCode: 3, reason: "exit code 3"))
        #expect(Supervisor.report(for: .oomKilled(code: 137)) == .failed(exitCode: 137, reason: "OOM killed (exceeded its memory limit)"))
        #expect(Supervisor.report(for: .failed(reason: .imageNotFound, message: "nope:latest")) == .failed(exitCode: nil, reason: "image not found: nope:latest"))
    }

    @Test("an adopted copy keeps running when the first set still has it, and is stopped when it does not")
    func adoption() {
        var s = Supervisor()
        s.adopted(taskID: "a", epoch: 2)
        s.adopted(taskID: "b", epoch: 1)
        #expect(s.assignments([Self.task("a", epoch: 2)]) == [.stop(taskID: "b", epoch: 1)])
        #expect(s.running.map(\.taskID) == ["a"])
    }

    @Test("a master saying the copy is no longer current stops it")
    func staleAck() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        #expect(s.withdrawn(taskID: "a", epoch: 1) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.withdrawn(taskID: "a", epoch: 1) == [])
    }

    @Test("an epoch that ended is not started again when a new master's stream still lists it")
    func endedEpochNotRerun() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        _ = s.ended(taskID: "a", epoch: 1, outcome: .exited(code: 0))
        // The completion report has not been applied yet; the stream (re)sends the same set.
        #expect(s.assignments([Self.task("a", epoch: 1)]) == [])
        // A new epoch (a restart by policy) does run.
        #expect(s.assignments([Self.task("a", epoch: 2)]) == [.start(Self.task("a", epoch: 2))])
    }
}
