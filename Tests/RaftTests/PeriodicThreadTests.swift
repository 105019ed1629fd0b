import Synchronization
import Testing
@testable import Raft

@Suite("PeriodicThread", .timeLimit(.minutes(1))) struct PeriodicThreadTests {
    @Test("runs its body every interval until stopped, and not after")
    func runsUntilStopped() async throws {
        let rounds = Atomic<Int>(0)
        let periodic = PeriodicThread(interval: .milliseconds(5)) { rounds.add(1, ordering: .relaxed) }
        let deadline = ContinuousClock.now + .seconds(30)
        while rounds.load(ordering: .relaxed) < 3 {
            #expect(ContinuousClock.now < deadline, "fewer than 3 rounds in 30 s")
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        periodic.stop()
        let atStop = rounds.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(50))
        #expect(rounds.load(ordering: .relaxed) == atStop, "a round ran after stop() returned")
        periodic.stop()  // idempotent
    }

    @Test("stop wakes a thread in a long sleep instead of waiting it out")
    func stopWakesTheSleeper() {
        let rounds = Atomic<Int>(0)
        let periodic = PeriodicThread(interval: .seconds(3_600)) { rounds.add(1, ordering: .relaxed) }
        periodic.stop()  // would block for an hour (past the suite's time limit) if it did not wake it
        #expect(rounds.load(ordering: .relaxed) == 0)
    }

    @Test("stop from inside a round ends the thread without deadlocking")
    func stopFromInside() async throws {
        let rounds = Atomic<Int>(0)
        let holder = Mutex<PeriodicThread?>(nil)
        let periodic = PeriodicThread(interval: .milliseconds(1)) {
            // Rounds before the test has stored the object do nothing.
            guard let periodic = holder.withLock({ $0 }) else { return }
            rounds.add(1, ordering: .relaxed)
            periodic.stop()
        }
        holder.withLock { $0 = periodic }
        let deadline = ContinuousClock.now + .seconds(30)
        while rounds.load(ordering: .relaxed) == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(rounds.load(ordering: .relaxed) == 1, "the thread went on after stopping itself")
        periodic.stop()
    }
}
