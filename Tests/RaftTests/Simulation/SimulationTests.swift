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
            if i % 25 == 0 { sim.checkLogMatching() }
            if sim.failure != nil { return sim }
        }
        sim.heal()
        sim.checkLogMatching()
        sim.checkAcknowledged()
        return sim
    }

    @Test("three servers under drops, duplicates, reordering, partitions and crashes", arguments: [0, 1, 2, 3])
    func threeServers(shard: Int) {
        var acknowledged = 0
        for seed in Self.seeds where Int(seed % 4) == shard {
            let sim = Self.run(seed: seed, size: 3, steps: 1500)
            #expect(sim.failure == nil, "\(sim.failure ?? "") — replay with RAFT_SIM_SEED=\(seed)")
            if sim.failure != nil { return }
            acknowledged += sim.acknowledged.count
        }
        #expect(acknowledged > 0, "no proposal was ever acknowledged: the simulation made no progress")
    }

    @Test("five servers with heavier faults", arguments: [0, 1])
    func fiveServers(shard: Int) {
        var faults = SimCluster.Faults()
        faults.dropRate = 0.1
        faults.crashRate = 0.004
        faults.partitionRate = 0.005
        for seed in Self.seeds.prefix(100) where Int(seed % 2) == UInt64(shard) {
            let sim = Self.run(seed: seed &+ 10_000, size: 5, steps: 1500, faults: faults)
            #expect(sim.failure == nil, "\(sim.failure ?? "") — replay with RAFT_SIM_SEED=\(seed &+ 10_000)")
            if sim.failure != nil { return }
        }
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
