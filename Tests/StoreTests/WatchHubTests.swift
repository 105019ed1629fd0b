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

/// `waitForRevision`: read-your-writes on a replica is woken by the apply, not by polling.
@Suite struct RevisionWaitTests {
    /// Waits (bounded, yielding) until `hub` has `count` revision waiters registered.
    static func waiters(_ hub: WatchHub, _ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while hub.revisionWaiterCount != count {
            guard ContinuousClock.now < deadline else { throw StoreError.malformed("\(hub.revisionWaiterCount) waiters, wanted \(count)") }
            await Task.yield()
        }
    }

    @Test("a revision already reached returns at once; a later one when it is published, not before")
    func wokenByPublish() async throws {
        let hub = WatchHub()
        hub.publish([WatchHubTests.put("a", at: 2)])
        try await hub.waitForRevision(2)
        let waiter = Task { try await hub.waitForRevision(4) }
        try await Self.waiters(hub, 1)
        hub.publish([WatchHubTests.put("a", at: 3)])
        #expect(hub.revisionWaiterCount == 1, "revision 3 does not satisfy a wait for 4")
        hub.publish([WatchHubTests.put("a", at: 4)])
        try await waiter.value
        #expect(hub.revisionWaiterCount == 0)
    }

    @Test("a snapshot's jump wakes waiters; cancellation and closing end the wait with their errors")
    func advanceCancelClose() async throws {
        let hub = WatchHub()
        let restored = Task { try await hub.waitForRevision(50) }
        try await Self.waiters(hub, 1)
        hub.advance(to: 60)
        try await restored.value

        let cancelled = Task { try await hub.waitForRevision(100) }
        try await Self.waiters(hub, 1)
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(hub.revisionWaiterCount == 0)

        let closed = Task { try await hub.waitForRevision(100) }
        try await Self.waiters(hub, 1)
        hub.finishAll(throwing: StoreError.malformed("closing"))
        await #expect(throws: StoreError.malformed("closing")) { try await closed.value }
    }

    @Test("on a Raft state machine, the apply of a write and the restore of a snapshot both wake the wait")
    func stateMachine() async throws {
        let (machine, hub) = RaftStore.makeStateMachine()
        let waiter = Task { try await hub.waitForRevision(2) }
        try await Self.waiters(hub, 1)
        _ = machine.apply(Command.put(PutRequest(key: b("k"), value: b("v"))).encoded(), index: 1)
        try await waiter.value

        var image = KeyValueStore()
        for i in 0..<5 { _ = image.apply(.put(PutRequest(key: b("k\(i)"), value: b("v")))) }
        let jump = Task { try await hub.waitForRevision(image.revision) }
        try await Self.waiters(hub, 1)
        try machine.restore(image.snapshotBytes(), index: 10)
        try await jump.value
    }

    @Test("MemoryStore waits for its own writes")
    func memoryStore() async throws {
        let store = MemoryStore()
        let waiter = Task { try await store.waitForRevision(3) }
        try await Self.waiters(store.watchHub, 1)
        _ = try await store.put(PutRequest(key: b("a"), value: b("1")))
        _ = try await store.put(PutRequest(key: b("a"), value: b("2")))
        try await waiter.value
    }
}
