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
