import EtcdProto
import Foundation
import Testing
@testable import EtcdBackend
@testable import Store
import EtcdTestSupport
import TestGate

// EtcdStore against a real etcd 3.4 (Debian's etcd-server). Every test starts its own etcd, so
// its store begins at revision 1 (the first write is revision 2) and the revisions below are exact.

private func u8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Expects `body` to throw exactly `expected`.
private func expectError(_ expected: StoreError, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(expected), got success", sourceLocation: sourceLocation)
    } catch let error as StoreError {
        #expect(error == expected, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected), got \(error)", sourceLocation: sourceLocation)
    }
}

/// The first `count` events of `stream`, or a failure after `timeout` (the conformance suite's helper).
private func firstEvents(_ stream: AsyncThrowingStream<WatchResponse, any Error>, _ count: Int,
                         timeout: Duration = .seconds(30)) async throws -> [WatchEvent] {
    try await StoreConformance.collect(stream, events: count, timeout: timeout)
}

// Serialized: each test runs its own etcd, and a dozen at once on CI's 2 cores would slow the
// timing-sensitive tests of other suites running alongside.
@Suite("EtcdStore against a real etcd", .serialized, .heavy, .timeLimit(.minutes(2)))
struct EtcdStoreTests {
    @Test("put, get, prefix ranges and deletes, with exact revisions")
    func putGetPrefixDelete() async throws {
        try await EtcdProcess.with { _, store in
            let first = try await store.put(u8("app/a"), u8("1"))
            #expect(first.revision == 2 && first.prevKV == nil)
            let second = try await store.put(PutRequest(key: u8("app/a"), value: u8("2"), prevKV: true))
            #expect(second.revision == 3)
            #expect(second.prevKV == KeyValue(key: u8("app/a"), createRevision: 2, modRevision: 2, version: 1, value: u8("1"), lease: 0))
            #expect(try await store.get(u8("app/a"))
                == KeyValue(key: u8("app/a"), createRevision: 2, modRevision: 3, version: 2, value: u8("2"), lease: 0))
            #expect(try await store.get(u8("app/missing")) == nil)

            try await store.put(u8("app/c"), u8("3"))                 // 4
            try await store.put(u8("app/b"), [])                       // 5: an empty value is a value
            try await store.put(u8("apq"), u8("outside the prefix"))   // 6

            let all = try await store.list(prefix: u8("app/"))
            #expect(all.revision == 6 && all.count == 3 && !all.more)
            #expect(all.kvs.map(\.key) == [u8("app/a"), u8("app/b"), u8("app/c")])
            #expect(all.kvs.map(\.value) == [u8("2"), [], u8("3")])
            #expect(all.kvs.map(\.modRevision) == [3, 5, 4])

            let end = KeyRange.prefixEnd(u8("app/"))
            let limited = try await store.range(RangeRequest(key: u8("app/"), rangeEnd: end, limit: 2), consistency: .linearizable)
            #expect(limited.kvs.map(\.key) == [u8("app/a"), u8("app/b")] && limited.more && limited.count == 3)
            let counted = try await store.range(RangeRequest(key: u8("app/"), rangeEnd: end, countOnly: true), consistency: .linearizable)
            #expect(counted.kvs.isEmpty && counted.count == 3)
            let keys = try await store.range(RangeRequest(key: u8("app/"), rangeEnd: end, keysOnly: true), consistency: .serializable)
            #expect(keys.kvs.map(\.key) == [u8("app/a"), u8("app/b"), u8("app/c")] && keys.kvs.allSatisfy { $0.value.isEmpty })
            let byMod = try await store.range(RangeRequest(key: u8("app/"), rangeEnd: end, sortOrder: .descend, sortTarget: .mod),
                                              consistency: .serializable)
            #expect(byMod.kvs.map(\.key) == [u8("app/b"), u8("app/c"), u8("app/a")])
            let fromKey = try await store.range(RangeRequest(key: u8("app/b"), rangeEnd: [0]), consistency: .linearizable)
            #expect(fromKey.kvs.map(\.key) == [u8("app/b"), u8("app/c"), u8("apq")])

            let deleted = try await store.deleteRange(DeleteRangeRequest(key: u8("app/"), rangeEnd: end, prevKV: true))
            #expect(deleted.revision == 7 && deleted.deleted == 3)
            #expect(deleted.prevKVs.map(\.key) == [u8("app/a"), u8("app/b"), u8("app/c")])
            // Deleting nothing writes nothing: the revision stays.
            let nothing = try await store.delete(u8("app/a"))
            #expect(nothing.revision == 7 && nothing.deleted == 0)
            #expect(try await store.list(prefix: u8("app/")).kvs.isEmpty)

            // Binary keys and values survive base64 both ways.
            let binary: [UInt8] = [0, 1, 0xfe, 0xff, 10, 13]
            try await store.put(u8("bin/") + binary, binary + [0])
            #expect(try await store.get(u8("bin/") + binary)?.value == binary + [0])
        }
    }

    @Test("txn: compares on version, value and revisions; success and failure branches")
    func txn() async throws {
        try await EtcdProcess.with { _, store in
            let create = try await store.txn(TxnRequest(
                compares: [Compare(key: u8("lock"), .equal, .version(0))],
                success: [.put(PutRequest(key: u8("lock"), value: u8("me"))), .put(PutRequest(key: u8("owner"), value: u8("me")))],
                failure: [.range(RangeRequest(key: u8("lock")))]))
            #expect(create.succeeded && create.revision == 2)
            #expect(create.responses == [.put(PutResponse(revision: 2, prevKV: nil)), .put(PutResponse(revision: 2, prevKV: nil))])

            let again = try await store.txn(TxnRequest(
                compares: [Compare(key: u8("lock"), .equal, .version(0))],
                success: [.put(PutRequest(key: u8("lock"), value: u8("you")))],
                failure: [.range(RangeRequest(key: u8("lock")))]))
            #expect(!again.succeeded && again.revision == 2)
            let lock = KeyValue(key: u8("lock"), createRevision: 2, modRevision: 2, version: 1, value: u8("me"), lease: 0)
            #expect(again.responses == [.range(RangeResponse(revision: 2, kvs: [lock], more: false, count: 1))])

            let cas = try await store.txn(TxnRequest(
                compares: [Compare(key: u8("lock"), .equal, .value(u8("me"))),
                           Compare(key: u8("lock"), .equal, .modRevision(2)),
                           Compare(key: u8("lock"), .equal, .createRevision(2)),
                           Compare(key: u8("lock"), .notEqual, .value(u8("you"))),
                           Compare(key: u8("lock"), .greater, .version(0)),
                           Compare(key: u8("lock"), .less, .modRevision(3)),
                           Compare(key: u8("lock"), .equal, .lease(0))],
                success: [.put(PutRequest(key: u8("lock"), value: u8("me2"), prevKV: true)),
                          .deleteRange(DeleteRangeRequest(key: u8("owner"), prevKV: true))]))
            #expect(cas.succeeded && cas.revision == 3)
            let owner = KeyValue(key: u8("owner"), createRevision: 2, modRevision: 2, version: 1, value: u8("me"), lease: 0)
            #expect(cas.responses == [.put(PutResponse(revision: 3, prevKV: lock)),
                                      .deleteRange(DeleteRangeResponse(revision: 3, deleted: 1, prevKVs: [owner]))])

            let stale = try await store.txn(TxnRequest(compares: [Compare(key: u8("lock"), .equal, .modRevision(2))],
                                                       success: [.put(PutRequest(key: u8("lock"), value: u8("x")))]))
            #expect(!stale.succeeded && stale.responses.isEmpty && stale.revision == 3)
            #expect(try await store.get(u8("lock"))?.value == u8("me2"))

            // A compare over a range holds only if it holds for every key in it.
            try await store.put(u8("r/1"), u8("a"))  // 4
            try await store.put(u8("r/2"), u8("b"))  // 5
            let ranged = try await store.txn(TxnRequest(
                compares: [Compare(key: u8("r/"), rangeEnd: KeyRange.prefixEnd(u8("r/")), .less, .modRevision(5))], success: []))
            #expect(!ranged.succeeded)
        }
    }

    @Test("history reads, compaction and the compacted and future revision errors")
    func historyAndCompaction() async throws {
        try await EtcdProcess.with { _, store in
            try await store.put(u8("k"), u8("v1"))  // 2
            try await store.put(u8("k"), u8("v2"))  // 3
            try await store.delete(u8("k"))          // 4
            try await store.put(u8("k"), u8("v3"))  // 5

            let at2 = try await store.range(RangeRequest(key: u8("k"), revision: 2), consistency: .linearizable)
            #expect(at2.revision == 5 && at2.kvs.map(\.value) == [u8("v1")])
            #expect(try await store.range(RangeRequest(key: u8("k"), revision: 4), consistency: .linearizable).kvs.isEmpty)
            let at5 = try await store.range(RangeRequest(key: u8("k"), revision: 5), consistency: .serializable)
            #expect(at5.kvs.first?.createRevision == 5 && at5.kvs.first?.version == 1)

            await expectError(.futureRevision(requested: 9, current: 5)) {
                _ = try await store.range(RangeRequest(key: u8("k"), revision: 9), consistency: .linearizable)
            }
            await expectError(.futureRevision(requested: 6, current: 5)) { try await store.compact(revision: 6) }

            try await store.compact(revision: 3)
            await expectError(.compacted(3)) {
                _ = try await store.range(RangeRequest(key: u8("k"), revision: 2), consistency: .linearizable)
            }
            #expect(try await store.range(RangeRequest(key: u8("k"), revision: 3), consistency: .linearizable).kvs.map(\.value) == [u8("v2")])
            await expectError(.compacted(3)) { try await store.compact(revision: 3) }
            await expectError(.compacted(3)) { try await store.compact(revision: 2) }
            // A txn reading below the compaction is refused as a whole.
            await expectError(.compacted(3)) {
                _ = try await store.txn(TxnRequest(compares: [], success: [.range(RangeRequest(key: u8("k"), revision: 2)),
                                                                           .put(PutRequest(key: u8("k"), value: u8("no")))]))
            }
            #expect(try await store.get(u8("k"))?.value == u8("v3"))
        }
    }

    @Test("bad input is refused with the built-in store's errors and changes nothing")
    func badInput() async throws {
        try await EtcdProcess.with { _, store in
            try await store.put(u8("k"), u8("v"))  // 2
            await expectError(.emptyKey) { try await store.put([], u8("v")) }
            await expectError(.emptyKey) { _ = try await store.get([]) }
            await expectError(.invalidRange) {
                _ = try await store.range(RangeRequest(key: u8("b"), rangeEnd: u8("a")), consistency: .linearizable)
            }
            await expectError(.invalidRange) { _ = try await store.deleteRange(DeleteRangeRequest(key: u8("b"), rangeEnd: u8("a"))) }
            let big = [UInt8](repeating: 7, count: maxRequestBytes)
            await expectError(.requestTooLarge(size: maxRequestBytes + 1, limit: maxRequestBytes)) { try await store.put(u8("k"), big) }
            await expectError(.invalidTTL(0)) { _ = try await store.grantLease(ttl: 0, id: 0) }
            await expectError(.invalidTTL(maxLeaseTTL + 1)) { _ = try await store.grantLease(ttl: maxLeaseTTL + 1, id: 0) }
            // These come from etcd itself.
            await expectError(.leaseNotFound(12345)) { try await store.put(u8("k"), u8("v2"), lease: 12345) }
            await expectError(.leaseNotFound(12345)) { try await store.revokeLease(12345) }
            await expectError(.leaseNotFound(12345)) { _ = try await store.keepAlive(12345) }
            await expectError(.leaseNotFound(12345)) { _ = try await store.timeToLive(12345) }
            await expectError(.duplicateKey) {
                _ = try await store.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: u8("d"), value: u8("1"))),
                                                                           .put(PutRequest(key: u8("d"), value: u8("2")))]))
            }
            await expectError(.leaseNotFound(777)) {
                _ = try await store.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: u8("d"), value: u8("1"), lease: 777))]))
            }
            _ = try await store.grantLease(ttl: 60, id: 99)
            await expectError(.leaseExists(99)) { _ = try await store.grantLease(ttl: 60, id: 99) }
            // Nothing above wrote: still revision 2 (lease grants do not bump the revision).
            let now = try await store.range(RangeRequest(key: u8("k")), consistency: .linearizable)
            #expect(now.revision == 2 && now.kvs.map(\.value) == [u8("v")])
        }
    }

    @Test("leases: grant, attach, time to live, keep-alive, revoke, expiry")
    func leases() async throws {
        try await EtcdProcess.with { _, store in
            let chosen = try await store.grantLease(ttl: 60, id: 0)
            #expect(chosen.id != 0 && chosen.ttl == 60)
            let lease = try await store.grantLease(ttl: 30, id: 0x7fff_0000_0000_0001)  // above 2^53: ids travel as strings
            #expect(lease == LeaseGrant(id: 0x7fff_0000_0000_0001, ttl: 30))
            let p1 = try await store.put(u8("l/b"), u8("1"), lease: lease.id)
            let p2 = try await store.put(u8("l/a"), u8("2"), lease: lease.id)
            try await store.put(u8("l/c"), u8("3"))
            #expect(p1.revision == 2 && p2.revision == 3)
            #expect(try await store.get(u8("l/a"))?.lease == lease.id)

            let status = try await store.timeToLive(lease.id)
            #expect(status.id == lease.id && status.grantedTTL == 30 && (28...30).contains(status.ttl))
            #expect(status.keys == [u8("l/a"), u8("l/b")])
            #expect(try await store.keepAlive(lease.id) == LeaseGrant(id: lease.id, ttl: 30))

            try await store.revokeLease(lease.id)
            let left = try await store.list(prefix: u8("l/"))
            #expect(left.revision == 5, "both keys are deleted at one revision")
            #expect(left.kvs.map(\.key) == [u8("l/c")])
            await expectError(.leaseNotFound(lease.id)) { _ = try await store.timeToLive(lease.id) }

            // Expiry: etcd's shortest TTL is about 2 s here; the key goes within a few seconds after.
            let short = try await store.grantLease(ttl: 2, id: 0)
            try await store.put(u8("l/short"), u8("x"), lease: short.id)  // 6
            let watch = store.watch(key: u8("l/short"), rangeEnd: [], fromRevision: 7, prevKV: true)
            let expired = try await firstEvents(watch, 1, timeout: .seconds(15))
            #expect(expired.map(\.kind) == [.delete] && expired.first?.kv.modRevision == 7)
            #expect(expired.first?.prevKV?.lease == short.id)
            #expect(try await store.get(u8("l/short")) == nil)
            await expectError(.leaseNotFound(short.id)) { _ = try await store.keepAlive(short.id) }
        }
    }

    @Test("watch: history with prev_kv, then live events, in order, with exact revisions")
    func watch() async throws {
        try await EtcdProcess.with { _, store in
            try await store.put(u8("w/a"), u8("1"))   // 2
            try await store.put(u8("x"), u8("no"))    // 3: outside the range
            try await store.put(u8("w/a"), u8("2"))   // 4
            try await store.delete(u8("w/a"))          // 5

            let end = KeyRange.prefixEnd(u8("w/"))
            let history = store.watch(key: u8("w/"), rangeEnd: end, fromRevision: 2, prevKV: true)
            let replayed = try await firstEvents(history, 3)
            #expect(replayed == [
                WatchEvent(kind: .put, kv: KeyValue(key: u8("w/a"), createRevision: 2, modRevision: 2, version: 1, value: u8("1"), lease: 0),
                           prevKV: nil),
                WatchEvent(kind: .put, kv: KeyValue(key: u8("w/a"), createRevision: 2, modRevision: 4, version: 2, value: u8("2"), lease: 0),
                           prevKV: KeyValue(key: u8("w/a"), createRevision: 2, modRevision: 2, version: 1, value: u8("1"), lease: 0)),
                WatchEvent(kind: .delete, kv: KeyValue(key: u8("w/a"), createRevision: 0, modRevision: 5, version: 0, value: [], lease: 0),
                           prevKV: KeyValue(key: u8("w/a"), createRevision: 2, modRevision: 4, version: 2, value: u8("2"), lease: 0)),
            ])

            // "From now" (revision 0): sees only what comes after it was registered. The first
            // progress notification (every second from the test etcd) proves it is registered, so
            // the writes below cannot race the registration.
            let live = store.watch(key: u8("w/"), rangeEnd: end, fromRevision: 0, prevKV: false)
            var iterator = live.makeAsyncIterator()
            let registered = try await iterator.next()
            #expect(registered == WatchResponse(revision: 5, events: []))
            try await store.put(u8("w/b"), u8("1"))  // 6
            _ = try await store.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: u8("w/c"), value: u8("1"))),
                                                                       .deleteRange(DeleteRangeRequest(key: u8("w/b")))]))  // 7
            var events: [WatchEvent] = []
            while events.count < 3, let response = try await iterator.next() { events += response.events }
            #expect(events.map(\.kind) == [.put, .put, .delete])
            #expect(events.map(\.kv.key) == [u8("w/b"), u8("w/c"), u8("w/b")])
            #expect(events.map(\.kv.modRevision) == [6, 7, 7])
            #expect(events.allSatisfy { $0.prevKV == nil })

            // A future start revision waits for it.
            let future = store.watch(key: u8("w/"), rangeEnd: end, fromRevision: 9, prevKV: false)
            try await store.put(u8("w/d"), u8("8"))  // 8: before the start
            try await store.put(u8("w/d"), u8("9"))  // 9
            #expect(try await firstEvents(future, 1).map(\.kv.modRevision) == [9])
        }
    }

    @Test("watch below the compacted revision fails with .compacted; progress notifications arrive")
    func watchCompactedAndProgress() async throws {
        try await EtcdProcess.with { _, store in
            try await store.put(u8("k"), u8("1"))  // 2
            try await store.put(u8("k"), u8("2"))  // 3
            try await store.compact(revision: 3)
            await expectError(.compacted(3)) {
                _ = try await firstEvents(store.watch(key: u8("k"), rangeEnd: [], fromRevision: 2, prevKV: false), 1)
            }
            #expect(try await firstEvents(store.watch(key: u8("k"), rangeEnd: [], fromRevision: 3, prevKV: false), 1)
                .map(\.kv.value) == [u8("2")])

            // The test etcd notifies progress every second.
            let quiet = store.watch(key: u8("quiet"), rangeEnd: [], fromRevision: 0, prevKV: false)
            let progress = try await withThrowingTaskGroup(of: WatchResponse?.self) { group in
                group.addTask {
                    for try await response in quiet where response.isProgressNotify { return response }
                    return nil
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(10))
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            #expect(progress?.revision == 3)
        }
    }

    @Test("an endpoint that refuses connections is skipped")
    func failoverToNextEndpoint() async throws {
        let etcd = try await EtcdProcess.start()
        let dead = "http://127.0.0.1:\(try EtcdProcess.freePort())"
        let store = try etcd.makeStore(extraEndpoints: [dead])
        do {
            #expect(store.endpoints == [dead, etcd.clientURL])
            #expect(try await store.put(u8("k"), u8("v")).revision == 2)
            #expect(try await store.get(u8("k"))?.value == u8("v"))
            let watched = try await firstEvents(store.watch(key: u8("k"), rangeEnd: [], fromRevision: 2, prevKV: false), 1)
            #expect(watched.map(\.kv.modRevision) == [2])
        } catch {
            Issue.record(error)
        }
        try await store.shutdown()
        await etcd.stop()
    }

    @Test("no endpoint reachable: the call fails with .unavailable, naming each attempt")
    func allEndpointsDown() async throws {
        let store = try EtcdStore(endpoints: ["127.0.0.1:\(try EtcdProcess.freePort())", "http://127.0.0.1:\(try EtcdProcess.freePort())/"],
                                  configuration: EtcdProcess.quickConfiguration)
        do {
            _ = try await store.put(u8("k"), u8("v"))
            Issue.record("expected the put to fail")
        } catch let EtcdStoreError.unavailable(attempts) {
            #expect(attempts.count == 2)
        } catch {
            Issue.record("expected .unavailable, got \(error)")
        }
        try await store.shutdown()
    }

    @Test("sustained load on one connection: etcd's bandwidth-probe PINGs do not get it closed")
    func sustainedLoad() async throws {
        // etcd (grpc-go) sends about one PING per answer; swift-nio-http2 alone would close the
        // connection after 200 in 30 s (DESIGN.md, "Known pitfalls"). 1,000 sequential calls in a
        // few seconds on the store's one connection would fail around the 200th without
        // `HTTP2PingResponder`; a failure would surface as .unavailable or .indeterminate here.
        try await EtcdProcess.with { _, store in
            for i in 0..<500 {
                let put = try await store.put(u8("load/\(i % 10)"), u8("\(i)"))
                #expect(put.revision == Int64(i) + 2)
                #expect(try await store.get(u8("load/\(i % 10)"))?.value == u8("\(i)"))
            }
        }
    }

    @Test("a write sent to an etcd that stops answering is indeterminate and is not repeated elsewhere")
    func indeterminateWrite() async throws {
        // Two independent etcds: if the put were wrongly retried on the second after the first
        // froze, it would succeed there and the store would report a write it cannot vouch for.
        let a = try await EtcdProcess.start()
        let b = try await EtcdProcess.start()
        var configuration = EtcdProcess.quickConfiguration
        configuration.requestTimeout = .seconds(1)
        let store = try EtcdStore(endpoints: [a.clientURL, b.clientURL], configuration: configuration)
        let storeB = try b.makeStore()
        do {
            #expect(try await store.put(u8("k"), u8("1")).revision == 2)  // connected to a
            a.suspend()
            do {
                _ = try await store.put(u8("k"), u8("2"))
                Issue.record("expected the put to be indeterminate")
            } catch let EtcdStoreError.indeterminate(endpoint, _) {
                #expect(endpoint == a.clientURL)
            }
            #expect(try await storeB.get(u8("k")) == nil, "the write was repeated on the other endpoint")
            // A read is not a write: it fails over.
            #expect(try await store.get(u8("k")) == nil)
        } catch {
            Issue.record(error)
        }
        a.resume()
        try await store.shutdown()
        try await storeB.shutdown()
        await a.stop()
        await b.stop()
    }

    @Test("a watch resumes on the next endpoint without gaps or duplicates when its member dies")
    func watchResumesAfterMemberDies() async throws {
        // Two independent etcds are not one cluster, but what the watch must do is the same: after
        // the connection breaks it reconnects elsewhere from the revision after the last delivered
        // one. The second etcd is fed the same writes so both have the same history.
        let a = try await EtcdProcess.start()
        let b = try await EtcdProcess.start()
        let store = try EtcdStore(endpoints: [a.clientURL, b.clientURL], configuration: EtcdProcess.quickConfiguration)
        let storeB = try b.makeStore()
        do {
            for i in 1...3 {
                try await store.put(u8("k"), u8("\(i)"))   // a: 2...4
                try await storeB.put(u8("k"), u8("\(i)"))  // b: 2...4
            }
            let watch = store.watch(key: u8("k"), rangeEnd: [], fromRevision: 2, prevKV: false)
            var iterator = watch.makeAsyncIterator()
            var seen: [Int64] = []
            while seen.count < 3, let response = try await iterator.next() { seen += response.events.map(\.kv.modRevision) }
            #expect(seen == [2, 3, 4])
            a.kill9()
            try await storeB.put(u8("k"), u8("4"))  // b: 5
            while seen.count < 4, let response = try await iterator.next() { seen += response.events.map(\.kv.modRevision) }
            #expect(seen == [2, 3, 4, 5])
            // Requests fail over too.
            #expect(try await store.get(u8("k"))?.modRevision == 5)
        } catch {
            Issue.record(error)
        }
        try await store.shutdown()
        try await storeB.shutdown()
        await a.stop()
        await b.stop()
    }

    @Test("a missing etcd binary fails the tests with a clear message")
    func missingBinaryFails() async throws {
        do {
            _ = try await EtcdProcess.start(binary: "/nonexistent/etcd")
            Issue.record("expected start to fail")
        } catch let error as EtcdProcess.StartError {
            #expect(error.description.contains("apt-get install etcd-server"))
        }
    }
}

@Suite("EtcdStore wire mapping and failover rules")
struct EtcdStoreMappingTests {
    @Test("requests carry etcd's fields: compare targets in their union member, txn reads linearizable")
    func encodesRequests() throws {
        let txn = Etcdserverpb_TxnRequest(TxnRequest(
            compares: [Compare(key: u8("k"), .notEqual, .version(0)), Compare(key: u8("k"), rangeEnd: [0], .less, .modRevision(7))],
            success: [.range(RangeRequest(key: u8("k"), rangeEnd: [0], revision: 3, limit: 2, countOnly: true, sortOrder: .descend, sortTarget: .create))],
            failure: [.put(PutRequest(key: u8("k"), value: u8("v"), lease: 5, prevKV: true)), .deleteRange(DeleteRangeRequest(key: u8("k"), prevKV: true))]))
        #expect(txn.compare.map(\.result) == [.notEqual, .less])
        #expect(txn.compare.map(\.target) == [.version, .mod])
        #expect(txn.compare[0].version == 0 && txn.compare[1].modRevision == 7 && txn.compare[1].rangeEnd == Data([0]))
        let range = txn.success[0].requestRange
        #expect(range.key == Data(u8("k")) && range.revision == 3 && range.limit == 2 && range.countOnly)
        #expect(range.sortOrder == .descend && range.sortTarget == .create && !range.serializable)
        #expect(txn.failure[0].requestPut.lease == 5 && txn.failure[0].requestPut.prevKv)
        #expect(txn.failure[1].requestDeleteRange.prevKv)
        #expect(Etcdserverpb_RangeRequest(RangeRequest(key: u8("k")), serializable: true).serializable)
    }

    @Test("answers decode to the store's types; an op without its own revision takes the txn's")
    func decodesResponses() throws {
        var header = Etcdserverpb_ResponseHeader()
        header.revision = 9
        var kv = Mvccpb_KeyValue()
        kv.key = Data(u8("k"))
        kv.createRevision = 2
        kv.modRevision = 9
        kv.version = 3
        kv.lease = 123
        var put = Etcdserverpb_PutResponse()
        put.prevKv = kv
        var txn = Etcdserverpb_TxnResponse()
        txn.header = header
        txn.succeeded = true
        var op = Etcdserverpb_ResponseOp()
        op.responsePut = put
        txn.responses = [op]
        let stored = KeyValue(key: u8("k"), createRevision: 2, modRevision: 9, version: 3, value: [], lease: 123)
        #expect(try TxnResponse(txn) == TxnResponse(revision: 9, succeeded: true, responses: [.put(PutResponse(revision: 9, prevKV: stored))]))

        var event = Mvccpb_Event()
        event.type = .delete
        event.kv.key = Data(u8("k"))
        event.kv.modRevision = 4
        #expect(WatchEvent(event) == WatchEvent(kind: .delete, kv: KeyValue(key: u8("k"), createRevision: 0, modRevision: 4, version: 0, value: [], lease: 0),
                                                prevKV: nil))
    }

    @Test("a write is repeated elsewhere only if it cannot have reached etcd or etcd did not propose it")
    func dispositions() {
        // Reads go to the next endpoint on any transient failure.
        #expect(EtcdStore.disposition(code: .unavailable, message: "Stream unexpectedly closed.", write: false, sent: true) == .tryNext)
        #expect(EtcdStore.disposition(code: .deadlineExceeded, message: "", write: false, sent: true) == .tryNext)
        // Writes: not sent (connection refused, still connecting at the deadline) -> next endpoint.
        #expect(EtcdStore.disposition(code: .unavailable, message: "connection refused", write: true, sent: false) == .tryNext)
        #expect(EtcdStore.disposition(code: .deadlineExceeded, message: "", write: true, sent: false) == .tryNext)
        // Sent, and etcd says it did not propose it -> next endpoint.
        #expect(EtcdStore.disposition(code: .unavailable, message: "etcdserver: no leader", write: true, sent: true) == .tryNext)
        // Sent, then the connection broke or the deadline passed -> may have been applied.
        #expect(EtcdStore.disposition(code: .unavailable, message: "Stream unexpectedly closed.", write: true, sent: true) == .indeterminate)
        #expect(EtcdStore.disposition(code: .deadlineExceeded, message: "", write: true, sent: true) == .indeterminate)
        #expect(EtcdStore.disposition(code: .unavailable, message: "etcdserver: request timed out", write: true, sent: true) == .indeterminate)
        // A definite refusal is reported whether sent or not.
        #expect(EtcdStore.disposition(code: .invalidArgument, message: "etcdserver: bad thing", write: true, sent: true) == .refused)
        #expect(EtcdStore.disposition(code: .permissionDenied, message: "", write: false, sent: true) == .refused)
    }

    @Test("endpoints are normalized; garbage is refused")
    func endpoints() throws {
        #expect(try EtcdStore.normalize(" etcd:2379/ ") == "http://etcd:2379")
        #expect(try EtcdStore.normalize("https://etcd:2379") == "https://etcd:2379")
        #expect(throws: EtcdStoreError.self) { try EtcdStore.normalize("ftp://etcd") }
        #expect(throws: EtcdStoreError.self) { try EtcdStore(endpoints: ["http://etcd:notaport"]) }
        #expect(throws: EtcdStoreError.self) { try EtcdStore(endpoints: []) }
    }
}
