import Linearizability
import Testing
import TestGate

/// Histories of a simulated correct store (linearizable by construction), then the same with one
/// read's answer corrupted. Each is a function of its seed, printed in every failure.
@Suite(.ownThread) struct SimulatedHistoryTests {
    static let seeds: [UInt64] = Array(1...12)

    /// A few keys, so that many clients crowd each one and the search has real choices to make.
    static func crowded(seed: UInt64) -> RegisterSimulation {
        RegisterSimulation(seed: seed, keys: 2, clients: 6, operations: 300, timeoutPercent: 3)
    }

    @Test("a simulated linearizable store's history passes", arguments: seeds)
    func simulatedPasses(seed: UInt64) {
        let history = Self.crowded(seed: seed).run()
        let report = KeyValueLinearizabilityChecker().check(history)
        #expect(report.verdict == .linearizable, "seed \(seed): \(report.summary)")
        #expect(history.contains { $0.timedOut }, "seed \(seed): the simulation timed nothing out, so it tests less than it says")
    }

    @Test("the same history with one read's answer corrupted fails, naming its key and the read", arguments: seeds)
    func corruptedReadFails(seed: UInt64) throws {
        var history = Self.crowded(seed: seed).run()
        var random = SeededGenerator(seed: seed ^ 0xC0FFEE)
        let reads = history.indices.filter { history[$0].isAnsweredRead }
        let victim = try #require(reads.randomElement(using: &random), "seed \(seed): no read to corrupt")
        let corrupted = KeyValueOperation(
            client: history[victim].client, call: history[victim].call, input: history[victim].input,
            outcome: .returned(at: history[victim].returnTime ?? 0, output: .read("corrupted"))
        )
        history[victim] = corrupted

        let report = KeyValueLinearizabilityChecker().check(history)
        #expect(report.verdict == .notLinearizable, "seed \(seed): \(report.summary)")
        #expect(report.violations.map(\.key) == [corrupted.input.key], "seed \(seed): \(report.summary)")
        #expect(report.violations.first?.unlinearizable.contains(corrupted) == true, "seed \(seed): \(report.summary)")
    }

    @Test("a simulation is a function of its seed")
    func simulationDeterministic() {
        #expect(Self.crowded(seed: 5).run() == Self.crowded(seed: 5).run())
        #expect(Self.crowded(seed: 5).run() != Self.crowded(seed: 6).run())
    }

    @Test("10 keys x 1,000 operations with 8 concurrent clients and timeouts are checked (size kept for debug builds)")
    func tenThousandOperations() {
        let seed: UInt64 = 2026
        let history = RegisterSimulation(seed: seed, keys: 10, clients: 8, operations: 10_000, timeoutPercent: 1).run()
        let report = KeyValueLinearizabilityChecker().check(history)
        #expect(report.verdict == .linearizable, "seed \(seed): \(report.summary)")
        #expect(report.keysChecked == 10)
        print("seed \(seed): \(report.summary)")
    }
}

extension HistoryOperation where Input == KeyValueInput, Output == KeyValueOutput {
    var isAnsweredRead: Bool {
        guard case .get = input else { return false }
        return !timedOut
    }
}
