// The ClusterStore conformance suite: one set of scenarios that every store must pass unchanged
// (MemoryStore, RaftStore on 3 replicas, EtcdStore against a real etcd).
//
// How to run it against your store, in this test target:
//
//     @Suite(.serialized) struct MyStoreConformanceTests {
//         @Test(arguments: StoreConformance.Scenario.allCases)
//         func conformance(_ scenario: StoreConformance.Scenario) async throws {
//             try await StoreConformance.run(scenario) {
//                 let store = try await MyStore(...)               // a fresh store per call
//                 return StoreConformance.Subject(store: store,
//                                                 advanceClock: nil,  // or a way to move lease time
//                                                 shutdown: { await store.close() })
//             }
//         }
//     }
//
// Rules the scenarios follow so a shared external store works too: every scenario uses its own key
// prefix and only relative revisions (read from the store's own answers). Two scenarios compact the
// whole store, which breaks history reads of scenarios running at the same time on the same store:
// give each call a fresh store or mark the suite `.serialized`. Lease-expiry scenarios need
// `advanceClock` (a way to move the store's lease clock forward) and are skipped without it.

import Synchronization
import Testing
@testable import Store

enum StoreConformance {
    /// A store under test and how to drive it.
    struct Subject: Sendable {
        var store: any ClusterStore
        /// Moves the store's lease clock forward by the given milliseconds; nil when the store's
        /// time cannot be controlled (the expiry scenarios are then skipped).
        var advanceClock: (@Sendable (Int64) async -> Void)?
        /// Called once when the scenario is done, whether it passed or not.
        var shutdown: @Sendable () async -> Void = {}
    }

    /// Makes a fresh subject for one scenario.
    typealias Factory = @Sendable () async throws -> Subject

    enum Scenario: String, CaseIterable, Sendable, CustomStringConvertible {
        case revisionsAndVersions
        case prefixRangeLimitCount
        case txnSuccessAndFailure
        case historyAndCompaction
        case watchFromRevision
        case watchCompacted
        case leaseGrantAttachRevoke
        case leaseExpiry
        case leaseKeepAlive

        var description: String { rawValue }
    }

    /// Runs one scenario on a fresh subject from `make`, then shuts the subject down.
    static func run(_ scenario: Scenario, _ make: Factory) async throws {
        let subject = try await make()
        do {
            try await body(scenario)(subject)
        } catch {
            await subject.shutdown()
            throw error
        }
        await subject.shutdown()
    }

    /// Runs every scenario, each on its own fresh subject.
    static func all(_ make: Factory) async throws {
        for scenario in Scenario.allCases { try await run(scenario, make) }
    }

    static func body(_ scenario: Scenario) -> @Sendable (Subject) async throws -> Void {
        switch scenario {
        case .revisionsAndVersions: revisionsAndVersions
        case .prefixRangeLimitCount: prefixRangeLimitCount
        case .txnSuccessAndFailure: txnSuccessAndFailure
        case .historyAndCompaction: historyAndCompaction
        case .watchFromRevision: watchFromRevision
        case .watchCompacted: watchCompacted
        case .leaseGrantAttachRevoke: leaseGrantAttachRevoke
        case .leaseExpiry: leaseExpiry
        case .leaseKeepAlive: leaseKeepAlive
        }
    }

    // MARK: Scenarios

    /// Every write bumps the revision by one; create/mod revision and version follow etcd.
    @Sendable static func revisionsAndVersions(_ s: Subject) async throws {
        let store = s.store
        let p = prefix("rev")
        let a = p + b("a")
        let r1 = try await store.put(a, b("1")).revision
        let kv1 = try #require(try await store.get(a))
        #expect(kv1.createRevision == r1 && kv1.modRevision == r1 && kv1.version == 1 && kv1.value == b("1"))

        let put2 = try await store.put(PutRequest(key: a, value: b("2"), prevKV: true))
        #expect(put2.revision == r1 + 1)
        #expect(put2.prevKV?.value == b("1") && put2.prevKV?.version == 1)
        let kv2 = try #require(try await store.get(a))
        #expect(kv2.createRevision == r1 && kv2.modRevision == r1 + 1 && kv2.version == 2 && kv2.value == b("2"))

        let del = try await store.deleteRange(DeleteRangeRequest(key: a, prevKV: true))
        #expect(del.revision == r1 + 2 && del.deleted == 1 && del.prevKVs.map(\.value) == [b("2")])
        #expect(try await store.get(a) == nil)

        // Deleting nothing changes nothing, not even the revision.
        let none = try await store.delete(p + b("missing"))
        #expect(none.deleted == 0 && none.revision == r1 + 2)

        // A re-created key starts a new generation.
        let r4 = try await store.put(a, b("3")).revision
        #expect(r4 == r1 + 3)
        let kv3 = try #require(try await store.get(a))
        #expect(kv3.createRevision == r4 && kv3.version == 1)

        // Serializable reads agree once the write is applied locally (on a single replica: at once).
        let header = try await store.range(RangeRequest(key: a), consistency: .linearizable)
        #expect(header.revision >= r4)

        // Bad input is refused and changes nothing.
        await expectStoreError({ if case .emptyKey = $0 { true } else { false } }) {
            _ = try await store.put([], b("x"))
        }
        let after = try await store.range(RangeRequest(key: a), consistency: .linearizable)
        #expect(after.revision == header.revision)
    }

    /// Prefix ranges honour limit (with `more`), count, countOnly, keysOnly and sorting.
    @Sendable static func prefixRangeLimitCount(_ s: Subject) async throws {
        let store = s.store
        let p = prefix("range")
        for name in ["c", "a", "b", "d"] { try await store.put(p + b("x/" + name), b("v" + name)) }
        try await store.put(p + b("y"), b("other"))
        let end = KeyRange.prefixEnd(p + b("x/"))

        let all = try await store.list(prefix: p + b("x/"))
        #expect(all.kvs.map(\.key) == ["a", "b", "c", "d"].map { p + b("x/" + $0) })
        #expect(all.count == 4 && !all.more)

        let limited = try await store.range(RangeRequest(key: p + b("x/"), rangeEnd: end, limit: 2), consistency: .linearizable)
        #expect(limited.kvs.map(\.value) == [b("va"), b("vb")])
        #expect(limited.more && limited.count == 4)

        let counted = try await store.range(RangeRequest(key: p + b("x/"), rangeEnd: end, countOnly: true), consistency: .linearizable)
        #expect(counted.kvs.isEmpty && counted.count == 4)

        let keys = try await store.range(RangeRequest(key: p + b("x/"), rangeEnd: end, keysOnly: true), consistency: .serializable)
        #expect(keys.kvs.count == 4 && keys.kvs.allSatisfy { $0.value.isEmpty })

        let descending = try await store.range(RangeRequest(key: p + b("x/"), rangeEnd: end, limit: 3, sortOrder: .descend),
                                               consistency: .linearizable)
        #expect(descending.kvs.map(\.value) == [b("vd"), b("vc"), b("vb")] && descending.more)

        // The whole prefix, including y.
        let everything = try await store.list(prefix: p)
        #expect(everything.count == 5)
    }

    /// A txn runs `success` when every compare holds and `failure` otherwise, at one revision.
    @Sendable static func txnSuccessAndFailure(_ s: Subject) async throws {
        let store = s.store
        let p = prefix("txn")
        let k = p + b("k"), other = p + b("other")

        // Create-if-absent: version == 0 holds for a missing key.
        let create = try await store.txn(TxnRequest(
            compares: [Compare(key: k, .equal, .version(0))],
            success: [.put(PutRequest(key: k, value: b("1"))), .put(PutRequest(key: other, value: b("o")))],
            failure: [.range(RangeRequest(key: k))]))
        #expect(create.succeeded)
        let created = try #require(try await store.get(k))
        #expect(created.modRevision == create.revision)
        #expect(try await store.get(other)?.modRevision == create.revision, "both puts share the txn's revision")

        // The same txn again fails and runs the failure branch, writing nothing.
        let again = try await store.txn(TxnRequest(
            compares: [Compare(key: k, .equal, .version(0))],
            success: [.put(PutRequest(key: k, value: b("2")))],
            failure: [.range(RangeRequest(key: k))]))
        #expect(!again.succeeded)
        #expect(again.revision == create.revision)
        guard case .range(let read)? = again.responses.first else {
            Issue.record("expected a range response, got \(again.responses)")
            return
        }
        #expect(read.kvs.map(\.value) == [b("1")])

        // Compare-and-swap on value and mod revision.
        let cas = try await store.txn(TxnRequest(
            compares: [Compare(key: k, .equal, .value(b("1"))), Compare(key: k, .equal, .modRevision(created.modRevision))],
            success: [.put(PutRequest(key: k, value: b("2"), prevKV: true)), .deleteRange(DeleteRangeRequest(key: other))]))
        #expect(cas.succeeded && cas.revision == create.revision + 1)
        guard case .put(let put)? = cas.responses.first, case .deleteRange(let del)? = cas.responses.last else {
            Issue.record("expected put and delete responses, got \(cas.responses)")
            return
        }
        #expect(put.prevKV?.value == b("1") && del.deleted == 1)
        #expect(try await store.get(other) == nil)
        let kv = try #require(try await store.get(k))
        #expect(kv.value == b("2") && kv.version == 2 && kv.createRevision == created.createRevision)

        // A stale compare fails.
        let stale = try await store.txn(TxnRequest(
            compares: [Compare(key: k, .equal, .modRevision(created.modRevision))],
            success: [.put(PutRequest(key: k, value: b("3")))]))
        #expect(!stale.succeeded && stale.responses.isEmpty)
        #expect(try await store.get(k)?.value == b("2"))

        // Greater/less compares on the version.
        let greater = try await store.txn(TxnRequest(compares: [Compare(key: k, .greater, .version(1))], success: []))
        #expect(greater.succeeded)
        let less = try await store.txn(TxnRequest(compares: [Compare(key: k, .less, .version(2))], success: []))
        #expect(!less.succeeded)
    }

    /// Reads at an older revision see the past until compaction; then they fail with `.compacted`.
    @Sendable static func historyAndCompaction(_ s: Subject) async throws {
        let store = s.store
        let k = prefix("hist") + b("k")
        let r1 = try await store.put(k, b("v1")).revision
        let r2 = try await store.put(k, b("v2")).revision
        let r3 = try await store.delete(k).revision

        let at1 = try await store.range(RangeRequest(key: k, revision: r1), consistency: .linearizable)
        #expect(at1.kvs.map(\.value) == [b("v1")])
        let at2 = try await store.range(RangeRequest(key: k, revision: r2), consistency: .linearizable)
        #expect(at2.kvs.map(\.value) == [b("v2")] && at2.kvs.first?.version == 2)
        let at3 = try await store.range(RangeRequest(key: k, revision: r3), consistency: .linearizable)
        #expect(at3.kvs.isEmpty)

        try await store.compact(revision: r2)
        await expectStoreError(isCompacted) {
            _ = try await store.range(RangeRequest(key: k, revision: r1), consistency: .linearizable)
        }
        let still = try await store.range(RangeRequest(key: k, revision: r2), consistency: .linearizable)
        #expect(still.kvs.map(\.value) == [b("v2")], "the compaction revision itself stays readable")
        // Compacting again at or below it is refused.
        await expectStoreError(isCompacted) { try await store.compact(revision: r1) }
    }

    /// A watch from an older revision replays exactly the changes since, then follows live ones.
    @Sendable static func watchFromRevision(_ s: Subject) async throws {
        let store = s.store
        let p = prefix("watch")
        let a = p + b("a"), c = p + b("c")
        let r1 = try await store.put(a, b("1")).revision
        try await store.put(p + b("b"), b("x"))
        try await store.put(a, b("2"))
        try await store.put(prefix("elsewhere") + b("z"), b("not watched"))
        let rDel = try await store.delete(a).revision

        let stream = store.watch(key: p, rangeEnd: KeyRange.prefixEnd(p), fromRevision: r1, prevKV: true)
        let history = try await collect(stream, events: 4)
        #expect(history.map(\.kind) == [.put, .put, .put, .delete])
        #expect(history.map(\.kv.key) == [a, p + b("b"), a, a])
        #expect(history.map(\.kv.modRevision) == [r1, r1 + 1, r1 + 2, rDel])
        #expect(history[0].prevKV == nil && history[0].kv.version == 1 && history[0].kv.value == b("1"))
        #expect(history[2].prevKV?.value == b("1") && history[2].kv.version == 2)
        #expect(history[3].prevKV?.value == b("2"))

        // Live: a watch from the next revision (explicit, so an asynchronous watch start cannot
        // miss anything) sees later writes in order, without prevKV when not asked.
        let next = rDel + 1
        let live = store.watch(key: p, rangeEnd: KeyRange.prefixEnd(p), fromRevision: next, prevKV: false)
        let r5 = try await store.put(c, b("c1")).revision
        try await store.put(prefix("elsewhere") + b("z"), b("not watched"))
        let txn = try await store.txn(TxnRequest(compares: [], success: [
            .put(PutRequest(key: c, value: b("c2"))), .deleteRange(DeleteRangeRequest(key: p + b("b"))),
        ]))
        let events = try await collect(live, events: 3)
        #expect(events.map(\.kind) == [.put, .put, .delete])
        #expect(events.map(\.kv.modRevision) == [r5, txn.revision, txn.revision])
        #expect(events.map(\.kv.key) == [c, c, p + b("b")])
        #expect(events.allSatisfy { $0.prevKV == nil })
    }

    /// A watch from before the compaction revision fails with `.compacted`.
    @Sendable static func watchCompacted(_ s: Subject) async throws {
        let store = s.store
        let k = prefix("wcompact") + b("k")
        let r1 = try await store.put(k, b("1")).revision
        let r2 = try await store.put(k, b("2")).revision
        try await store.compact(revision: r2)
        await expectStoreError(isCompacted) {
            _ = try await collect(store.watch(key: k, rangeEnd: [], fromRevision: r1, prevKV: false), events: 1)
        }
        // From the compaction revision on it still works.
        let fromR2 = try await collect(store.watch(key: k, rangeEnd: [], fromRevision: r2, prevKV: false), events: 1)
        #expect(fromR2.map(\.kv.value) == [b("2")])
    }

    /// A lease's keys vanish when it is revoked; timeToLive and keepAlive report its TTL.
    @Sendable static func leaseGrantAttachRevoke(_ s: Subject) async throws {
        let store = s.store
        let p = prefix("lease")
        let grant = try await store.grantLease(ttl: 60, id: 0)
        #expect(grant.ttl == 60 && grant.id != 0)
        try await store.put(p + b("a"), b("1"), lease: grant.id)
        try await store.put(p + b("b"), b("2"), lease: grant.id)
        try await store.put(p + b("c"), b("3"))
        #expect(try await store.get(p + b("a"))?.lease == grant.id)

        let ttl = try await store.timeToLive(grant.id)
        #expect(ttl.id == grant.id && ttl.grantedTTL == 60 && (1...60).contains(ttl.ttl))
        #expect(ttl.keys == [p + b("a"), p + b("b")])

        let renewed = try await store.keepAlive(grant.id)
        #expect(renewed.id == grant.id && renewed.ttl == 60)

        let before = try await store.range(RangeRequest(key: p + b("c")), consistency: .linearizable).revision
        try await store.revokeLease(grant.id)
        let left = try await store.list(prefix: p)
        #expect(left.kvs.map(\.key) == [p + b("c")])
        #expect(left.revision == before + 1, "both keys are deleted at one revision")

        await expectStoreError(isLeaseNotFound) { _ = try await store.timeToLive(grant.id) }
        await expectStoreError(isLeaseNotFound) { _ = try await store.keepAlive(grant.id) }
        await expectStoreError(isLeaseNotFound) { try await store.put(p + b("d"), b("4"), lease: grant.id) }
    }

    /// Keys attached to a lease that is not kept alive disappear after its TTL, and a watcher sees
    /// the deletions.
    @Sendable static func leaseExpiry(_ s: Subject) async throws {
        guard let advance = s.advanceClock else { return }
        let store = s.store
        let p = prefix("expiry")
        let grant = try await store.grantLease(ttl: 5, id: 0)
        let r = try await store.put(p + b("a"), b("1"), lease: grant.id).revision
        let watch = store.watch(key: p, rangeEnd: KeyRange.prefixEnd(p), fromRevision: r + 1, prevKV: false)
        await advance(4_000)
        #expect(try await store.get(p + b("a")) != nil, "not expired before its TTL")
        await advance(2_000)
        try await eventually("the leased key expires") { try await expired(p + b("a"), store, advance) }
        let events = try await collect(watch, events: 1)
        #expect(events.map(\.kind) == [.delete] && events.map(\.kv.key) == [p + b("a")])
        try await eventually("the lease is gone") {
            do {
                _ = try await store.timeToLive(grant.id)
                return false
            } catch let error as StoreError {
                return isLeaseNotFound(error)
            }
        }
    }

    /// A keep-alive extends a lease by its full TTL from the time of the keep-alive.
    @Sendable static func leaseKeepAlive(_ s: Subject) async throws {
        guard let advance = s.advanceClock else { return }
        let store = s.store
        let k = prefix("keepalive") + b("k")
        let grant = try await store.grantLease(ttl: 5, id: 0)
        try await store.put(k, b("1"), lease: grant.id)
        await advance(3_000)
        #expect(try await store.keepAlive(grant.id).ttl == 5)
        await advance(3_000)
        // 6 s after the grant, 3 s after the keep-alive: alive, with about 2 s left (up to the full
        // 5 s if a new leader took over meanwhile: it renews every lease, as etcd's does).
        #expect(try await store.get(k) != nil)
        let left = try await store.timeToLive(grant.id)
        #expect((1...5).contains(left.ttl))
        await advance(3_000)
        try await eventually("the key expires once keep-alives stop") { try await expired(k, store, advance) }
    }

    // MARK: Helpers

    /// Whether `key` is gone; if not, moves the clock on by half a second. A replicated store whose
    /// leader changes renews every lease in full (etcd does the same), so a test that waited for a
    /// fixed clock could wait forever; moving on keeps the wait bounded.
    static func expired(_ key: [UInt8], _ store: any ClusterStore, _ advance: @Sendable (Int64) async -> Void) async throws -> Bool {
        if try await store.get(key) == nil { return true }
        await advance(500)
        return false
    }

    /// A key prefix unique to one scenario run, so scenarios can share an external store.
    static func prefix(_ name: String) -> [UInt8] {
        b("conformance/\(name)/\(UInt64.random(in: 0...UInt64.max))/")
    }

    /// The first `events` events of a watch, failing after `timeout`.
    static func collect(_ stream: AsyncThrowingStream<WatchResponse, any Error>, events count: Int,
                        timeout: Duration = .seconds(30)) async throws -> [WatchEvent] {
        try await withThrowingTaskGroup(of: [WatchEvent]?.self) { group in
            group.addTask {
                var out: [WatchEvent] = []
                for try await response in stream {
                    out += response.events
                    if out.count >= count { break }
                }
                return out
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let events = first else {
                throw WatchTimeout(expected: count)
            }
            return events
        }
    }

    struct WatchTimeout: Error, CustomStringConvertible {
        var expected: Int
        var description: String { "the watch did not deliver \(expected) events in time" }
    }

    /// Polls `condition` until it holds, failing after `timeout`.
    static func eventually(_ what: String, timeout: Duration = .seconds(30),
                           _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("timed out waiting until \(what)")
    }

    /// Expects `body` to throw a `StoreError` matching `match`.
    static func expectStoreError(_ match: (StoreError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation,
                                 _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected a store error, got success", sourceLocation: sourceLocation)
        } catch let error as StoreError {
            #expect(match(error), "unexpected store error \(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a store error, got \(error)", sourceLocation: sourceLocation)
        }
    }

    static func isCompacted(_ e: StoreError) -> Bool { if case .compacted = e { true } else { false } }
    static func isLeaseNotFound(_ e: StoreError) -> Bool { if case .leaseNotFound = e { true } else { false } }
}
