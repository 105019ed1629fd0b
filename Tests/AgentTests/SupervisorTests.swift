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

    @Test("a copy stopped while the runtime was still starting it is stopped again once it has started")
    func stopDuringStart() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        #expect(s.assignments([]) == [.stop(taskID: "a", epoch: 1)])
        // That stop found nothing to stop; the copy now exists and must not be left running.
        #expect(s.started(taskID: "a", epoch: 1) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled) == [.remove(taskID: "a")])
    }

    @Test("the fence stops every copy (stopping ones too), reports the wanted ones as lost contact, and starts nothing until unfenced")
    func fence() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1), Self.task("b", epoch: 1), Self.task("c", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        _ = s.started(taskID: "b", epoch: 1)
        // c is still starting; b is being replaced by epoch 2 (stop under way, 2 queued).
        #expect(s.assignments([Self.task("a", epoch: 1), Self.task("b", epoch: 2), Self.task("c", epoch: 1)]) == [.stop(taskID: "b", epoch: 1)])
        #expect(s.fence() == [.fence(taskID: "a", epoch: 1), .fence(taskID: "b", epoch: 1), .fence(taskID: "c", epoch: 1)])
        #expect(s.fenced)
        #expect(s.fence() == [], "fencing twice does nothing")
        #expect(s.running.isEmpty, "heartbeats no longer list them")
        // Stopped by the fence: a failure saying why.
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled)
                == [.remove(taskID: "a"), .report(taskID: "a", epoch: 1, .failed(exitCode: nil, reason: Supervisor.fencedReason))])
        // The replaced copy was not wanted: no report, and its successor does not start.
        #expect(s.ended(taskID: "b", epoch: 1, outcome: .cancelled) == [.remove(taskID: "b")])
        // The copy that was starting is fenced again once it exists.
        #expect(s.started(taskID: "c", epoch: 1) == [.fence(taskID: "c", epoch: 1)])
        // Sets that arrive while fenced are dropped: nothing starts, nothing is stopped.
        #expect(s.assignments([Self.task("b", epoch: 2), Self.task("d", epoch: 1)]) == [])
        s.unfenced()
        // c ended by itself before the fence reached it: how it really ended is reported.
        #expect(s.ended(taskID: "c", epoch: 1, outcome: .exited(code: 0)) == [.remove(taskID: "c"), .report(taskID: "c", epoch: 1, .completed)])
        // A fresh set after the fence: fenced epochs never run again here; new ones start.
        #expect(s.assignments([Self.task("a", epoch: 1), Self.task("b", epoch: 2), Self.task("d", epoch: 1)])
                == [.start(Self.task("b", epoch: 2)), .start(Self.task("d", epoch: 1))])
    }

    @Test("an epoch whose ending was saved before a restart is not started again by a stream that still lists it")
    func recovered() {
        var s = Supervisor()
        s.recovered(taskID: "a", epoch: 4)
        #expect(s.assignments([Self.task("a", epoch: 4)]) == [])
        #expect(s.assignments([Self.task("a", epoch: 3)]) == [])
        #expect(s.assignments([Self.task("a", epoch: 5)]) == [.start(Self.task("a", epoch: 5))])
    }

    static func stop(_ id: String, epoch: UInt64) -> AssignedTask {
        var t = task(id, epoch: epoch)
        t.stop = true
        return t
    }

    @Test("a stop request (a drain) stops the copy once and reports its end, which lets the masters move the task")
    func stopToMove() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [], "a repeated set stops nothing twice")
        #expect(s.running.isEmpty)
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled)
                == [.remove(taskID: "a"), .report(taskID: "a", epoch: 1, .cancelled(reason: "stopped on the worker"))])
        // The masters may list it once more before the report lands: nothing starts, nothing more is said.
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [])
    }

    @Test("a stop request for a copy this worker never started is confirmed at once; one still starting is stopped when it has started")
    func stopWithoutCopy() {
        var s = Supervisor()
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [.report(taskID: "a", epoch: 1, .cancelled(reason: "stopped before it started"))])
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [])
        #expect(s.assignments([Self.task("a", epoch: 1)]) == [], "that epoch never starts afterwards")

        _ = s.assignments([Self.task("b", epoch: 1)])
        #expect(s.assignments([Self.stop("b", epoch: 1)]) == [.stop(taskID: "b", epoch: 1)])
        #expect(s.started(taskID: "b", epoch: 1) == [.stop(taskID: "b", epoch: 1)])
        #expect(s.ended(taskID: "b", epoch: 1, outcome: .cancelled)
                == [.remove(taskID: "b"), .report(taskID: "b", epoch: 1, .cancelled(reason: "stopped on the worker"))])
    }

    @Test("a stop request for an epoch queued behind an older copy is confirmed only once that copy has ended")
    func stopQueued() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        #expect(s.assignments([Self.task("a", epoch: 2)]) == [.stop(taskID: "a", epoch: 1)])
        #expect(s.assignments([Self.stop("a", epoch: 2)]) == [], "the old copy is already stopping")
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled)
                == [.remove(taskID: "a"), .report(taskID: "a", epoch: 2, .cancelled(reason: "stopped before it started"))])
        #expect(s.assignments([Self.stop("a", epoch: 2)]) == [])
    }

    @Test("a stop request while fenced is dropped like any set; the fence's own report covers the copy")
    func stopWhileFenced() {
        var s = Supervisor()
        _ = s.assignments([Self.task("a", epoch: 1)])
        _ = s.started(taskID: "a", epoch: 1)
        _ = s.fence()
        #expect(s.assignments([Self.stop("a", epoch: 1)]) == [])
        #expect(s.ended(taskID: "a", epoch: 1, outcome: .cancelled)
                == [.remove(taskID: "a"), .report(taskID: "a", epoch: 1, .failed(exitCode: nil, reason: Supervisor.fencedReason))])
    }
}
