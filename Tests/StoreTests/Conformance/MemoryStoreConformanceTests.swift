import Synchronization
import Testing
@testable import Store

/// A lease clock the test moves by hand (milliseconds), shared by every replica of a test cluster.
final class ManualTime: Sendable {
    private let ms = Mutex<Int64>(1_000_000)

    var now: @Sendable () -> Int64 { { [self] in ms.withLock { $0 } } }

    func advance(_ delta: Int64) {
        ms.withLock { $0 += delta }
    }
}

@Suite struct MemoryStoreConformanceTests {
    static func subject() -> StoreConformance.Subject {
        let time = ManualTime()
        return StoreConformance.Subject(store: MemoryStore(now: time.now), advanceClock: { time.advance($0) })
    }

    @Test(arguments: StoreConformance.Scenario.allCases)
    func conformance(_ scenario: StoreConformance.Scenario) async throws {
        try await StoreConformance.run(scenario) { Self.subject() }
    }

    @Test("concurrent writers: a watcher sees every revision once, in order")
    func concurrentWritesWatchedInOrder() async throws {
        let store = MemoryStore()
        let start = try await store.range(RangeRequest(key: b("w")), consistency: .linearizable).revision
        let watch = store.watch(key: b("w/"), rangeEnd: KeyRange.prefixEnd(b("w/")), fromRevision: start + 1, prevKV: false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask { for i in 0..<50 { try await store.put(b("w/\(writer)/\(i)"), b("v")) } }
            }
            try await group.waitForAll()
        }
        let events = try await StoreConformance.collect(watch, events: 200)
        #expect(events.map(\.kv.modRevision) == Array((start + 1)...(start + 200)))
    }

    @Test("a watch opened between history and live writes has no gap and no duplicate")
    func watchHandOver() async throws {
        let store = MemoryStore()
        let first = try await store.put(b("h"), b("0")).revision
        typealias Stream = AsyncThrowingStream<WatchResponse, any Error>
        let watches = try await withThrowingTaskGroup(of: [Stream].self) { group in
            group.addTask { for i in 1...100 { try await store.put(b("h"), b("\(i)")) }; return [] }
            group.addTask {
                var opened: [Stream] = []
                for _ in 0..<20 {
                    opened.append(store.watch(key: b("h"), rangeEnd: [], fromRevision: first, prevKV: false))
                    await Task.yield()
                }
                return opened
            }
            var all: [Stream] = []
            for try await some in group { all += some }
            return all
        }
        for w in watches {
            let events = try await StoreConformance.collect(w, events: 101)
            #expect(events.map(\.kv.modRevision) == Array(first...(first + 100)))
        }
    }

    @Test("expired leases are revoked by the next call that observes them")
    func expiryObservedByAnyCall() async throws {
        let time = ManualTime()
        let store = MemoryStore(now: time.now)
        let lease = try await store.grantLease(ttl: 1, id: 42)
        #expect(lease.id == 42)
        try await store.put(b("k"), b("v"), lease: 42)
        time.advance(1_000)
        #expect(try await store.get(b("k")) == nil)
        #expect(store.store.leaseIDs.isEmpty)
    }
}
