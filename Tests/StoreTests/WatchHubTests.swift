import Testing
@testable import Store

@Suite struct WatchHubTests {
    static func put(_ key: String, at revision: Int64) -> WatchEvent {
        WatchEvent(kind: .put, kv: KeyValue(key: b(key), createRevision: revision, modRevision: revision, version: 1,
                                            value: b("v"), lease: 0), prevKV: KeyValue(key: b(key), createRevision: 1, modRevision: 1, version: 1, value: [], lease: 0))
    }

    @Test("events the history already returned are not delivered again; later ones are, once")
    func noDuplicateAcrossHandOver() async throws {
        let hub = WatchHub()
        // The history read saw revisions 2 and 3; revision 3 is published again afterwards, as a Raft
        // replica does when it applied the entry before the watch and publishes it after.
        let stream = hub.watch(key: b("a"), rangeEnd: [], fromRevision: 2, prevKV: false) { _, _, _, _ in
            // What `KeyValueStore.events` returns for prevKV: false.
            ([Self.put("a", at: 2), Self.put("a", at: 3)].map { var e = $0; e.prevKV = nil; return e }, 3)
        }
        hub.publish([Self.put("a", at: 3)])
        hub.publish([Self.put("b", at: 4)])
        hub.publish([Self.put("a", at: 5)])
        let events = try await StoreConformance.collect(stream, events: 3)
        #expect(events.map(\.kv.modRevision) == [2, 3, 5])
        #expect(events.allSatisfy { $0.prevKV == nil }, "prevKV is stripped when not asked for")
    }

    @Test("a failing history read fails the stream; a consumer that stops unregisters")
    func failuresAndTermination() async throws {
        let hub = WatchHub()
        let failed = hub.watch(key: b("a"), rangeEnd: [], fromRevision: 1, prevKV: false) { _, _, _, _ in
            throw StoreError.compacted(5)
        }
        await #expect(throws: StoreError.compacted(5)) { for try await _ in failed {} }
        #expect(hub.count == 0)

        do {
            // The stream is dropped at the end of this scope, which terminates it.
            let stream = hub.watch(key: b("a"), rangeEnd: [], fromRevision: 0, prevKV: true) { _, _, _, _ in ([], 1) }
            #expect(hub.count == 1)
            hub.publish([Self.put("a", at: 2)])
            let events = try await StoreConformance.collect(stream, events: 1)
            #expect(events.first?.prevKV != nil)
        }
        try await StoreConformance.eventually("the watcher is unregistered") { hub.count == 0 }
    }

    @Test("a watch from a future revision skips everything before it")
    func futureStart() async throws {
        let hub = WatchHub()
        let stream = hub.watch(key: b("a"), rangeEnd: [], fromRevision: 4, prevKV: false) { _, _, _, _ in ([], 2) }
        hub.publish([Self.put("a", at: 3)])
        hub.publish([Self.put("a", at: 4)])
        let events = try await StoreConformance.collect(stream, events: 1)
        #expect(events.map(\.kv.modRevision) == [4])
    }

    @Test("a watcher that would miss revisions (a snapshot installed under it) fails with compacted")
    func gapFailsTheWatch() async throws {
        let hub = WatchHub()
        let stream = hub.watch(key: b("a"), rangeEnd: [], fromRevision: 0, prevKV: false) { _, _, _, _ in ([], 3) }
        hub.publish([Self.put("a", at: 4)])
        hub.publish([Self.put("a", at: 7)])
        var seen: [Int64] = []
        await #expect(throws: StoreError.compacted(7)) {
            for try await response in stream { seen += response.events.map(\.kv.modRevision) }
        }
        #expect(seen == [4])
        #expect(hub.count == 0)
    }

    @Test("RaftStore's relayed watch unregisters from its hub when the consumer stops")
    func raftStoreUnregisters() async throws {
        let cluster = try RaftStoreCluster()
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let store = cluster.stores[cluster.follower(of: leader)]!
        let start = try await store.put(b("k"), b("1")).revision
        _ = try await StoreConformance.collect(store.watch(key: b("k"), rangeEnd: [], fromRevision: start, prevKV: false), events: 1)
        try await StoreConformance.eventually("the hub is empty") { store.hub.count == 0 }
    }
}
