import Raft
import Testing
@testable import Store
import TestGate

@Suite struct CompactionTests {
    /// Random histories compacted step by step answer every read and watch from the compaction
    /// revision on exactly like the same history never compacted, and keep less.
    @Test(arguments: [7, 2026, 31_337] as [UInt64])
    func compactedAnswersLikeUncompacted(seed: UInt64) throws {
        var gen = CommandGenerator(rng: SplitMix64(seed: seed))
        var store = KeyValueStore(), twin = KeyValueStore()
        var compactions = 0
        for step in 0..<2_000 {
            let command = Self.readingCurrent(gen.command())
            if case .compact = command { continue }
            _ = store.apply(command)
            _ = twin.apply(command)
            guard step % 97 == 96, store.revision > store.compactRevision + 1 else { continue }
            let target = store.compactRevision + 1 + gen.int(0...(store.revision - store.compactRevision - 1))
            let recordsBefore = store.history.values.reduce(0) { $0 + $1.count }
            try store.compact(target)
            compactions += 1
            #expect(store.history.values.reduce(0) { $0 + $1.count } <= recordsBefore)
            for revision in target...store.revision {
                let all = RangeRequest(key: Array("k".utf8), rangeEnd: Array("l".utf8), revision: revision)
                #expect(try store.range(all) == twin.range(all), "seed \(seed): read at \(revision) after compacting to \(target)")
            }
            #expect(try store.events(key: Array("k".utf8), rangeEnd: Array("l".utf8), fromRevision: target, prevKV: true)
                == twin.events(key: Array("k".utf8), rangeEnd: Array("l".utf8), fromRevision: target, prevKV: true),
                "seed \(seed): events from \(target)")
            // Every key keeps at most one record at or before the compaction revision, never a tombstone.
            for records in store.history.values {
                let old = records.filter { $0.main <= target }
                #expect(old.count <= 1 && old.allSatisfy { $0.kv != nil }, "seed \(seed)")
            }
        }
        #expect(compactions > 10)
    }

    /// The command with every read inside a txn made at the current revision: a read of an old
    /// revision fails once compacted, which would make the two stores' histories differ.
    static func readingCurrent(_ command: Command) -> Command {
        guard case .txn(var txn) = command else { return command }
        func current(_ op: RequestOp) -> RequestOp {
            guard case .range(var read) = op else { return op }
            read.revision = 0
            return .range(read)
        }
        txn.success = txn.success.map(current)
        txn.failure = txn.failure.map(current)
        return .txn(txn)
    }

    @Test("the compactor's target: nothing until twice the retention piled up, then all but the retention")
    func target() {
        #expect(HistoryCompactor.target(revision: 100, compacted: 0, retain: 60) == nil)
        #expect(HistoryCompactor.target(revision: 121, compacted: 0, retain: 60) == 61)
        #expect(HistoryCompactor.target(revision: 180, compacted: 61, retain: 60) == nil)
        #expect(HistoryCompactor.target(revision: 181, compacted: 61, retain: 60) == 121)
    }

    @Test("a compaction step drops at most the events asked for, unless one revision holds more, and never passes the target")
    func compactionStep() throws {
        var store = KeyValueStore()
        // Revisions 2...11: one put each; revision 12: one txn of 6 puts; revisions 13...20: one put each.
        for i in 0..<10 { _ = store.apply(.put(PutRequest(key: b("k\(i)"), value: b("v")))) }
        _ = store.apply(.txn(TxnRequest(compares: [], success: (0..<6).map { .put(PutRequest(key: b("t\($0)"), value: b("v"))) })))
        for i in 0..<8 { _ = store.apply(.put(PutRequest(key: b("k\(i)"), value: b("w")))) }
        #expect(store.revision == 20 && store.log.count == 24)
        #expect(store.compactionStep(toward: 18, maxEvents: 100) == 18)  // everything fits: the target
        #expect(store.compactionStep(toward: 18, maxEvents: 4) == 6)     // events at 2, 3, 4, 5
        #expect(store.compactionStep(toward: 5, maxEvents: 4) == 5)      // not past the target
        try store.compact(11)
        // The next events are revision 11's put and revision 12's six: the step may not split a revision.
        #expect(store.compactionStep(toward: 18, maxEvents: 3) == 12)
        #expect(store.compactionStep(toward: 18, maxEvents: 1) == 12)
        try store.compact(12)
        #expect(store.compactionStep(toward: 18, maxEvents: 2) == 12 + 1)  // revision 12's events stay until passed
        // Each step drops no more than asked (revision 12's six events once they are passed).
        var steps = 0
        while store.compactRevision < 18 {
            let before = store.log.count
            try store.compact(store.compactionStep(toward: 18, maxEvents: 2))
            #expect(before - store.log.count <= 6)
            steps += 1
        }
        #expect(steps >= 3 && store.compactRevision == 18)
    }

    @Test("detachStorage gives a copy buffers of its own, equal in content, and leaves a unique store's buffers in place")
    func detachStorage() throws {
        var store = KeyValueStore()
        for i in 0..<50 { _ = store.apply(.put(PutRequest(key: b("k\(i % 20)"), value: b("v\(i)")))) }
        _ = store.apply(.leaseGrant(id: 7, ttl: 10, now: 0))
        // The buffers' addresses: Dictionary is one reference to its storage (test-only look inside).
        func buffers(_ s: KeyValueStore) -> [UnsafeRawPointer?] {
            [unsafeBitCast(s.history, to: UnsafeRawPointer.self), unsafeBitCast(s.leases, to: UnsafeRawPointer.self),
             s.sortedKeys.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) },
             s.log.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }]
        }
        var copy = store
        #expect(buffers(copy) == buffers(store))  // shared until a write or detachStorage
        copy.detachStorage()
        #expect(copy == store)
        #expect(zip(buffers(copy), buffers(store)).allSatisfy { $0 != $1 })
        let unique = buffers(copy)
        copy.detachStorage()
        #expect(buffers(copy) == unique)
    }

    @Test("a snapshot image does not see applies made after it was taken")
    func snapshotImageIsAPointInTimeCopy() throws {
        let machine = KVStateMachine()
        _ = machine.apply(Command.put(PutRequest(key: b("a"), value: b("1"))).encoded(), index: 1)
        let image = machine.snapshotImage()
        let expected = machine.snapshot()
        _ = machine.apply(Command.put(PutRequest(key: b("a"), value: b("2"))).encoded(), index: 2)
        _ = machine.apply(Command.put(PutRequest(key: b("b"), value: b("3"))).encoded(), index: 3)
        var written: [UInt8] = Array("header".utf8)
        image(&written)
        #expect(written.starts(with: Array("header".utf8)))
        let bytes = Array(written.dropFirst(6))
        #expect(bytes == expected)
        #expect(try KeyValueStore(snapshot: bytes).get(b("a"))?.value == b("1"))
    }
}

@Suite(.serialized, .heavy) struct HistoryCompactorTests {
    @Test("while leading, the compactor keeps the last revisions on every replica and old reads fail as compacted")
    func compactsEveryReplica() async throws {
        let cluster = try RaftStoreCluster()
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let compactors = cluster.ids.map { id in
            // Steps of 3 events: a compaction is several commands, and still reaches its target.
            Task { await HistoryCompactor(store: cluster.stores[id]!, retain: 10, interval: .milliseconds(10), maxEventsPerStep: 3).run() }
        }
        defer { for task in compactors { task.cancel() } }
        var last: Int64 = 0
        for i in 0..<60 { last = try await cluster.stores[leader]!.put(b("h/\(i % 7)"), b("v\(i)")).revision }
        try await StoreConformance.eventually("every replica compacted") {
            cluster.ids.allSatisfy { id in
                let s = cluster.stores[id]!.machine.store
                return s.compactRevision >= last - 20 && s.compactRevision <= last - 10
            }
        }
        let follower = cluster.stores[cluster.follower(of: leader)]!
        await #expect(throws: StoreError.self) {
            _ = try await follower.range(RangeRequest(key: b("h/0"), revision: 2), consistency: .linearizable)
        }
        let current = try await follower.range(RangeRequest(key: b("h/"), rangeEnd: b("h0")), consistency: .linearizable)
        #expect(current.kvs.count == 7)
    }
}
