import Foundation
import Testing
@testable import Raft

/// Runs many seeded simulations. `RAFT_SIM_SEEDS` sets how many (CI default 300) and
/// `RAFT_SIM_SEED` replays a single seed.
@Suite struct SimulationTests {
    static var seeds: [UInt64] {
        let env = ProcessInfo.processInfo.environment
        if let one = env["RAFT_SIM_SEED"].flatMap(UInt64.init) { return [one] }
        let count = env["RAFT_SIM_SEEDS"].flatMap(Int.init) ?? 300
        return (1...UInt64(count)).map { $0 }
    }

    static func run(seed: UInt64, size: Int, steps: Int, faults: SimCluster.Faults = .init()) -> SimCluster {
        var sim = SimCluster(seed: seed, size: size, faults: faults)
        for i in 0..<steps {
            sim.step()
            sim.checkLogMatching()
            if sim.failure != nil { return sim }
        }
        sim.heal()
        sim.checkLogMatching()
        sim.checkAcknowledged()
        return sim
    }

    /// Runs a batch of simulations on a thread of its own: they are CPU-bound and would otherwise
    /// occupy the few threads of the cooperative pool that the asynchronous tests need. The
    /// thread runs at the lowest priority: six batches at once (a minute of CPU) would otherwise
    /// take most of two cores from the suites beside them, whose elections, leases and deadlines
    /// are timed; at nice 19 the simulations take what the others leave.
    static func runBatch(seeds: [UInt64], size: Int, faults: SimCluster.Faults = .init()) async -> (failure: String?, acknowledged: Int) {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                // On Linux the nice value is per thread, and who = 0 names the calling thread.
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
                var acknowledged = 0
                for seed in seeds {
                    let sim = run(seed: seed, size: size, steps: 1500, faults: faults)
                    if let failure = sim.failure {
                        continuation.resume(returning: ("\(failure) — replay with RAFT_SIM_SEED=\(seed)", acknowledged))
                        return
                    }
                    acknowledged += sim.acknowledged.count
                }
                continuation.resume(returning: (nil, acknowledged))
            }
        }
    }

    @Test("three servers under drops, duplicates, reordering, partitions and crashes", arguments: [0, 1, 2, 3])
    func threeServers(shard: Int) async {
        let result = await Self.runBatch(seeds: Self.seeds.filter { Int($0 % 4) == shard }, size: 3)
        #expect(result.failure == nil, "\(result.failure ?? "")")
        #expect(result.acknowledged > 0, "no proposal was ever acknowledged: the simulation made no progress")
    }

    @Test("five servers with heavier faults", arguments: [0, 1])
    func fiveServers(shard: Int) async {
        var faults = SimCluster.Faults()
        faults.dropRate = 0.1
        faults.crashRate = 0.004
        faults.partitionRate = 0.005
        // Five-server seeds start at 10,001 so that a printed seed names one simulation.
        let replay = ProcessInfo.processInfo.environment["RAFT_SIM_SEED"] != nil
        let seeds = Self.seeds.prefix(100).filter { Int($0 % 2) == shard }.map { replay ? $0 : $0 &+ 10_000 }
        let result = await Self.runBatch(seeds: seeds, size: 5, faults: faults)
        #expect(result.failure == nil, "\(result.failure ?? "")")
    }

    @Test("a simulation is a pure function of its seed")
    func deterministic() {
        let a = Self.run(seed: 42, size: 3, steps: 600)
        let b = Self.run(seed: 42, size: 3, steps: 600)
        #expect(a.acknowledged == b.acknowledged)
        #expect(a.leaders == b.leaders)
        #expect(a.now == b.now)
    }
}
