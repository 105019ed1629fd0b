import Foundation
import Testing
import TestGate

/// Issue 15's register workload under faults, short profile: 6 clients put, read (linearizable)
/// and compare-and-set 3 keys through every master's etcd API (TLS) while a fault hits the
/// cluster of 3 real master processes; the history, with every call that failed recorded as "may
/// or may not have happened", plus one read of every key through every master after healing,
/// must be linearizable (our own Wing & Gong checker, split per key).
///
/// Each test is seeded (`ORCH_FAULT_SEED` replays one; a failure prints it with the fault
/// schedule, the violations and the masters' logs) and runs its fault in cycles while the
/// workload runs (`ORCH_FAULT_SECONDS`, a few seconds by default: one cycle). Sleeps in the
/// schedules are the faults' timing, never waits for a condition: those poll with deadlines.
@Suite(.serialized, .heavy) struct RegisterLinearizabilityTests {
    @Test("register stays linearizable while the leader is killed with SIGKILL and restarted")
    func leaderKill() async throws {
        try await runRegisterFaultTest("leader-kill", faults: { run in
            while run.hasTime(for: .seconds(6)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                run.workload.markDown(leader)
                try await run.kill(leader)
                run.schedule.fault("SIGKILL m\(leader + 1) (leader)")
                try await Task.sleep(for: .seconds(2))  // the fault schedule: down for 2 s
                try run.cluster.masters[leader].start()
                run.schedule.note("m\(leader + 1) restarted")
                try await run.waitReady(leader)
                run.workload.markUp(leader)
                run.schedule.note("m\(leader + 1) ready")
            }
        })
    }

    @Test("register stays linearizable while a follower is killed with SIGKILL and restarted")
    func followerKill() async throws {
        try await runRegisterFaultTest("follower-kill", faults: { run in
            while run.hasTime(for: .seconds(6)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                let follower = run.choose(run.cluster.masters.indices.filter { $0 != leader })
                run.workload.markDown(follower)
                try await run.kill(follower)
                run.schedule.fault("SIGKILL m\(follower + 1) (follower; m\(leader + 1) leads)")
                try await Task.sleep(for: .seconds(2))  // the fault schedule: down for 2 s
                try run.cluster.masters[follower].start()
                run.schedule.note("m\(follower + 1) restarted")
                try await run.waitReady(follower)
                run.workload.markUp(follower)
                run.schedule.note("m\(follower + 1) ready")
            }
        })
    }

    /// The stopped leader keeps its clients (their calls hang until they time out); when it
    /// continues it may still believe it leads for a moment, which must not give a stale read.
    @Test("register stays linearizable while the leader is stopped (SIGSTOP) for twice the election timeout, then continued")
    func leaderPause() async throws {
        try await runRegisterFaultTest("leader-pause", faults: { run in
            while run.hasTime(for: .seconds(7)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                run.cluster.masters[leader].signal(SIGSTOP)
                run.schedule.fault("SIGSTOP m\(leader + 1) (leader)")
                try await Task.sleep(for: FaultProfile.electionTimeout * 2)  // the fault schedule: stopped for 2 election timeouts
                // ... and until the others have moved on (a poll, bounded), so that the leader
                // that continues is a deposed one.
                let next = try await run.leader(excluding: [leader], timeout: .seconds(8))
                run.schedule.note("m\(next + 1) leads")
                run.cluster.masters[leader].signal(SIGCONT)
                run.schedule.note("SIGCONT m\(leader + 1)")
                try await run.waitReady(leader)
                run.schedule.note("m\(leader + 1) ready")
            }
        })
    }

    /// The isolated leader keeps its clients: their calls must fail or time out (a write it
    /// acknowledged would be one it could not commit; a stale read the checker rejects).
    @Test("register stays linearizable while the leader is cut off into a minority, and the majority serves writes")
    func leaderPartition() async throws {
        try await runRegisterFaultTest("leader-partition", proxied: true, duration: .seconds(9), faults: { run in
            let proxy = try #require(run.cluster.proxy)
            while run.hasTime(for: .seconds(8)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                proxy.isolate(leader)
                let from = run.workload.now()
                let cutAt = ContinuousClock.now
                run.schedule.fault("m\(leader + 1) (leader) cut off from both others, both ways")
                let next = try await run.leader(excluding: [leader], timeout: .seconds(4))
                run.schedule.note("m\(next + 1) leads the majority")
                try await Task.sleep(until: cutAt + .seconds(5))  // the fault schedule: the partition lasts 5 s
                let to = run.workload.now()
                let closed = proxy.heal()
                run.schedule.note("healed (\(closed) connections that lost bytes closed)")
                run.partitions.withLock {
                    $0.append(.init(isolated: leader, majority: Set(run.cluster.masters.indices).subtracting([leader]), from: from, to: to))
                }
                try await run.waitReady(leader)
                run.schedule.note("m\(leader + 1) ready")
            }
        }, checks: FaultRun.partitionChecks)
    }

    /// Bytes from the leader to the followers are lost, the other way they pass: the followers
    /// elect a new leader, the old one hears it but cannot answer.
    @Test("register stays linearizable through a one-way cut of the leader's messages to the followers")
    func oneWayCut() async throws {
        try await runRegisterFaultTest("one-way-cut", proxied: true, duration: .seconds(9), faults: { run in
            let proxy = try #require(run.cluster.proxy)
            while run.hasTime(for: .seconds(8)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                let followers = run.cluster.masters.indices.filter { $0 != leader }
                for f in followers { proxy.cut(from: leader, to: f) }
                let from = run.workload.now()
                let cutAt = ContinuousClock.now
                run.schedule.fault("m\(leader + 1) (leader) → \(followers.map { "m\($0 + 1)" }.joined(separator: ", ")) cut, the other way passes")
                let next = try await run.leader(excluding: [leader], timeout: .seconds(4))
                run.schedule.note("m\(next + 1) leads the followers")
                try await Task.sleep(until: cutAt + .seconds(5))  // the fault schedule: the cut lasts 5 s
                let to = run.workload.now()
                let closed = proxy.heal()
                run.schedule.note("healed (\(closed) connections that lost bytes closed)")
                run.partitions.withLock { $0.append(.init(isolated: leader, majority: Set(followers), from: from, to: to)) }
                try await run.waitReady(leader)
                run.schedule.note("m\(leader + 1) ready")
            }
        }, checks: FaultRun.partitionChecks)
    }

    /// strace attaches to a running master mid-workload and kills it with SIGKILL on entry to its
    /// Nth `pwrite64` (SQLite writing WAL frames: a transaction torn in the middle) or `fdatasync`
    /// (frames written, not yet synced), N and the master seeded; it restarts normally and must
    /// serve the latest acknowledged writes (the final reads through it).
    @Test("register stays linearizable when a master crashes in the middle of a disk write and restarts")
    func crashDuringDiskWrite() async throws {
        try await runRegisterFaultTest("disk-write-crash", faults: { run in
            while run.hasTime(for: .seconds(6)) {
                try await Task.sleep(for: .seconds(2))  // the fault schedule: the workload warms up
                let leader = try await run.leader()
                let victim = run.choose(Array(run.cluster.masters.indices))
                let syscall = run.choose(["pwrite64", "fdatasync"])
                let n = run.choose(Array(1...8))
                let master = run.cluster.masters[victim]
                let pid = try #require(master.pid, "m\(victim + 1) is not running")
                let strace = ManagedProcess(
                    name: "strace-m\(victim + 1)", binary: URL(fileURLWithPath: "/usr/bin/strace"),
                    arguments: ["-f", "-qq", "-e", "trace=\(syscall)", "-e", "inject=\(syscall):signal=KILL:when=\(n)", "-p", "\(pid)"],
                    logPath: "\(run.cluster.root)/strace-m\(victim + 1).log")
                try strace.start()
                defer { strace.signal(SIGKILL) }
                run.schedule.fault("strace on m\(victim + 1) (\(victim == leader ? "leader" : "follower")): SIGKILL on entry to its \(syscall) call #\(n) (counted per thread)")
                try await run.cluster.waitUntil("m\(victim + 1) killed in \(syscall) by strace", timeout: .seconds(5)) { !master.isRunning }
                run.workload.markDown(victim)
                run.schedule.note("m\(victim + 1) died: \(master.termination.map { "\($0.reason == .uncaughtSignal ? "signal" : "exit") \($0.status)" } ?? "?")")
                try await run.cluster.waitUntil("strace to exit", timeout: .seconds(5)) { !strace.isRunning }
                try await Task.sleep(for: .seconds(1))  // the fault schedule: down for 1 s
                try master.start()
                run.schedule.note("m\(victim + 1) restarted")
                try await run.waitReady(victim)
                run.workload.markUp(victim)
                run.schedule.note("m\(victim + 1) ready")
            }
        })
    }
}
