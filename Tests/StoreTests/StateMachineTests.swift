import Synchronization
import Raft
import Testing
@testable import Store

@Suite struct StateMachineTests {
    @Test func appliesEncodedCommandsAndReportsEvents() throws {
        let seen = Mutex<[WatchEvent]>([])
        let machine = KVStateMachine { events in seen.withLock { $0 += events } }
        let put = machine.apply(Command.put(PutRequest(key: b("a"), value: b("1"))).encoded(), index: 1)
        #expect(try Response(decoding: put) == .put(PutResponse(revision: 2, prevKV: nil)))
        let grant = machine.apply(Command.leaseGrant(id: 0, ttl: 5, now: 0).encoded(), index: 2)
        #expect(try Response(decoding: grant) == .leaseGrant(revision: 2, id: 1, ttl: 5))
        let bad = machine.apply([7, 7, 7], index: 3)
        #expect(try Response(decoding: bad) == .failure(.malformed("unknown format version 7")))
        let rejected = machine.apply(Command.put(PutRequest(key: [], value: [])).encoded(), index: 4)
        #expect(try Response(decoding: rejected) == .failure(.emptyKey))
        #expect(machine.appliedIndex == 4 && machine.store.revision == 2)
        let r = machine.read { $0.get(b("a"))?.value }
        #expect(r == b("1"))
        #expect(seen.withLock { $0.map(\.kind) } == [.put])
    }

    @Test func appliedEventsMatchTheWatchLog() throws {
        var store = KeyValueStore()
        var gen = CommandGenerator(rng: SplitMix64(seed: 2024))
        var pushed: [WatchEvent] = []
        for _ in 0..<500 {
            let command = gen.command()
            if case .compact = command { continue }     // keep all history to compare with
            pushed += store.apply(command).events
        }
        // What the shell pushed live equals what a watcher reading from revision 1 gets: no gaps or duplicates.
        #expect(try store.events(key: [0], rangeEnd: [0], fromRevision: 1, prevKV: true) == pushed)
        let revisions = pushed.map(\.kv.modRevision)
        #expect(revisions == revisions.sorted())
        #expect(Set(revisions) == Set(2...store.revision))   // every revision produced at least one event
    }

    @Test func snapshotRestoreAnswersIdentically() throws {
        let original = KVStateMachine()
        var gen = CommandGenerator(rng: SplitMix64(seed: 5))
        for i in 1...800 { _ = original.apply(gen.command().encoded(), index: UInt64(i)) }
        let image = original.snapshot()
        let replica = KVStateMachine()
        try replica.restore(image, index: 800)
        #expect(replica.store == original.store)
        #expect(replica.snapshot() == image)                 // equal stores give equal bytes
        let a = original.store, c = replica.store
        #expect(a.revision > 10 && a.compactRevision > 0)
        for rev in [0, a.compactRevision, (a.compactRevision + a.revision) / 2, a.revision] {
            #expect(try a.range([0], rangeEnd: [0], revision: rev) == c.range([0], rangeEnd: [0], revision: rev))
        }
        #expect(try a.events(key: [0], rangeEnd: [0], fromRevision: a.compactRevision, prevKV: true)
                == c.events(key: [0], rangeEnd: [0], fromRevision: c.compactRevision, prevKV: true))
        #expect(a.expiredLeases(now: 0) == c.expiredLeases(now: 0) && a.leaseIDs == c.leaseIDs)
        // Both continue identically.
        for i in 801...900 {
            let command = gen.command().encoded()
            #expect(original.apply(command, index: UInt64(i)) == replica.apply(command, index: UInt64(i)))
        }
        #expect(original.store == replica.store)
    }

    @Test("format 4 names an event's versions in the history: the same store as format 3 in fewer bytes, and a bad reference is refused",
          arguments: [5, 77, 2026] as [UInt64])
    func eventsReferToHistory(seed: UInt64) throws {
        var store = KeyValueStore()
        var gen = CommandGenerator(rng: SplitMix64(seed: seed))
        for _ in 0..<600 { _ = store.apply(gen.command()) }
        // A placement-like revision: one txn rewriting many keys, each event with its previous version.
        _ = store.apply(.txn(TxnRequest(compares: [], success: (0..<40).map { .put(PutRequest(key: b("t/\($0)"), value: b("first"))) })))
        _ = store.apply(.txn(TxnRequest(compares: [], success: (0..<40).map { .put(PutRequest(key: b("t/\($0)"), value: b("placed \($0)"))) })))
        #expect(store.log.contains { $0.prevKV != nil } && store.log.contains { $0.kind == .delete })
        let three = store.snapshotBytes(format: 3), four = store.snapshotBytes()
        #expect(four[0] == 4 && three[0] == 3)
        #expect(try KeyValueStore(snapshot: three) == store, "seed \(seed)")
        #expect(try KeyValueStore(snapshot: four) == store, "seed \(seed)")
        #expect(four.count < three.count, "seed \(seed): \(four.count) bytes against \(three.count)")
        #expect(four.count <= store.snapshotSizeBound(requests: store.appliedRequests.entries))
        // An image whose event names a version its key does not have is malformed, not a divergent replica.
        var other = KeyValueStore()
        _ = other.apply(.put(PutRequest(key: b("k"), value: b("1"))))
        var image = other.snapshotBytes()
        // The image ends with the one event (put; its version in the history: key "k", revision 2
        // zigzagged to 4; no previous version), then three empty sections.
        let event: [UInt8] = [0, 2, 1, UInt8(ascii: "k"), 4, 0, 0, 0, 0]
        #expect(Array(image.suffix(event.count)) == event)
        image[image.count - 5] = 6  // revision 3: "k" has no version there
        #expect(throws: StoreError.self) { try KeyValueStore(snapshot: image) }
    }

    @Test func badSnapshotLeavesStateAlone() throws {
        let machine = KVStateMachine()
        _ = machine.apply(Command.put(PutRequest(key: b("a"), value: b("1"))).encoded(), index: 1)
        let before = machine.store
        var image = machine.snapshot()
        image.removeLast()
        #expect(throws: StoreError.self) { try machine.restore(image, index: 2) }
        #expect(throws: StoreError.self) { try machine.restore([], index: 2) }
        #expect(machine.store == before)
        #expect(try KeyValueStore(snapshot: KeyValueStore().snapshotBytes()) == KeyValueStore())
    }
}
