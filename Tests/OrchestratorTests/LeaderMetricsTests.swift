import ClusterModel
import Foundation
import Logging
import Store
import Testing
@testable import Orchestrator

/// The leader loop's counters reach `/metrics`: an operator sees how fast the leader places, how
/// often its transactions meet a concurrent change, and whether retention keeps up (issue 16's
/// first million-task attempt fell behind on retention and nothing showed it).
@Suite struct LeaderMetricsTests {
    @Test("rounds, placements, commits, conflicts, retention deletions and compactions are exported as counters")
    func leaderLoopCounters() async throws {
        let store = MemoryStore()
        let repo = ClusterRepository(store: store)
        let info = NodeInfo(id: "n1", state: .ready, capacity: Resources(cpu: 4000, memory: 8192))
        try await repo.save(NodeRecord(info: info, address: "10.0.0.1:7000", lastHeartbeat: 0), expectRevision: 0)
        try await SchedulingRoundTests.submit(repo, count: 12)
        var options = LeaderLoop.Options()
        options.taskRetention = nil
        options.nodePurge = nil
        options.jitterSeed = 1
        let loop = LeaderLoop(repository: repo, leadership: TaskRetentionTests.AlwaysLeader(), masterID: "m1",
                              defaultAlgorithm: .binPacking, options: options, now: { 0 }, logger: Logger(label: "test"))
        let running = Task { await loop.run() }
        defer { running.cancel() }
        // 4000 millicores at 500 each: 8 of the 12 fit.
        try await ClusterCacheTests.eventually("8 tasks placed") { loop.placements.load(ordering: .relaxed) == 8 }

        let values = Dictionary(uniqueKeysWithValues: MetricsRegistry.leaderLoopFamilies(loop).map { ($0.name, ($0.kind, $0.samples)) })
        func counter(_ name: String) -> Double? {
            guard let (kind, samples) = values[name], kind == .counter, samples.count == 1, samples[0].labels.isEmpty else { return nil }
            return samples[0].value
        }
        #expect(counter("orchestrator_scheduler_placements_total") == 8)
        #expect((counter("orchestrator_scheduler_rounds_total") ?? 0) >= 1)
        #expect((counter("orchestrator_scheduler_commits_total") ?? 0) >= 1)
        #expect(counter("orchestrator_scheduler_conflicts_total") == 0)
        #expect(counter("orchestrator_tasks_deleted_total") == 0)
        #expect(counter("orchestrator_store_compactions_total") != nil)

        let rendered = MetricsRegistry().render(snapshot: MetricsRegistry.leaderLoopFamilies(loop))
        #expect(rendered.contains("# TYPE orchestrator_scheduler_placements_total counter\norchestrator_scheduler_placements_total 8\n"))
    }

    @Test("process_resident_memory_bytes is this process's resident size, as /proc/self/status counts it")
    func residentMemory() throws {
        let families = MetricsRegistry.processFamilies()
        let resident = try #require(families.first { $0.name == "process_resident_memory_bytes" }?.samples.first?.value)
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kilobytes = try #require(Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        // Read at two moments of a running test process: equal within a few megabytes.
        #expect(abs(resident - kilobytes * 1024) < 16 * 1024 * 1024, "statm \(resident) bytes, status \(kilobytes) kB")
        #expect(resident > 1024 * 1024)
    }
}
