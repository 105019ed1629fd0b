import EtcdBackend
import Testing
@testable import Store
import EtcdTestSupport
import TestGate

/// The shared ClusterStore scenarios (Conformance/StoreConformance.swift) against a real etcd 3.4.
///
/// Each scenario gets its own etcd process, so the scenarios that compact the whole store cannot
/// disturb each other; `.serialized` keeps at most one etcd of this suite running at a time on a
/// 2-core machine. etcd's lease clock is the wall clock, so `advanceClock` really waits: the two
/// lease-expiry scenarios take about 10 s each.
@Suite("ClusterStore conformance: EtcdStore", .serialized, .heavy, .timeLimit(.minutes(2)))
struct EtcdStoreConformanceTests {
    @Test(arguments: StoreConformance.Scenario.allCases)
    func conformance(_ scenario: StoreConformance.Scenario) async throws {
        try await StoreConformance.run(scenario) {
            let etcd = try await EtcdProcess.start()
            let store: EtcdStore
            do { store = try etcd.makeStore() } catch {
                await etcd.stop()
                throw error
            }
            // The scenarios' revision arithmetic assumes an empty store, which etcd reports as revision 1.
            do {
                let empty = try await store.range(RangeRequest(key: Array("/".utf8), rangeEnd: [0]), consistency: .linearizable)
                #expect(empty.revision == 1 && empty.kvs.isEmpty, "the etcd under test is not fresh")
            } catch {
                try? await store.shutdown()
                await etcd.stop()
                throw error
            }
            return StoreConformance.Subject(
                store: store,
                advanceClock: { milliseconds in try? await Task.sleep(for: .milliseconds(milliseconds)) },
                shutdown: {
                    try? await store.shutdown()
                    await etcd.stop()
                })
        }
    }
}
