import Testing
@testable import Store

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct KeyValueStoreTests {
    @Test func revisionsAndVersionsMatchEtcd() throws {
        var s = KeyValueStore()
        #expect(s.revision == 1)                       // etcd: an empty store reports header revision 1
        var r = try s.put(b("a"), b("1"))
        #expect(r.revision == 2)                       // first put: 1 + 1 = 2
        var a = try #require(s.get(b("a")))
        #expect(a.createRevision == 2 && a.modRevision == 2 && a.version == 1)
        r = try s.put(b("a"), b("2"), prevKV: true)    // second put of a: revision 3, version 2
        #expect(r.revision == 3)
        #expect(r.prevKV?.value == b("1") && r.prevKV?.modRevision == 2)
        a = try #require(s.get(b("a")))
        #expect(a.createRevision == 2 && a.modRevision == 3 && a.version == 2)
        try s.put(b("b"), b("x"))                      // revision 4, b created at 4
        let d = try s.deleteRange(b("a"), prevKV: true) // revision 5; a's generation ends
        #expect(d.revision == 5 && d.deleted == 1 && d.prevKVs.map(\.version) == [2])
        let none = try s.deleteRange(b("a"))           // deleting nothing: etcd keeps revision 5
        #expect(none.revision == 5 && none.deleted == 0 && s.revision == 5)
        try s.put(b("a"), b("3"))                      // revision 6; recreated: create 6, version 1
        a = try #require(s.get(b("a")))
        #expect(a.createRevision == 6 && a.modRevision == 6 && a.version == 1)
        let bkv = try #require(s.get(b("b")))
        #expect(bkv.createRevision == 4 && bkv.modRevision == 4 && bkv.version == 1)
        #expect(try s.range(b("a")).revision == 6)     // reads report the current revision
    }

    @Test func prefixAndRangeQueries() throws {
        var s = KeyValueStore()
        for k in ["a", "foo", "foo/1", "foo/2", "fop", "z"] { try s.put(b(k), b("v-" + k)) }
        let prefix = try s.range(b("foo/"), rangeEnd: KeyRange.prefixEnd(b("foo/")))
        #expect(prefix.kvs.map(\.key) == [b("foo/1"), b("foo/2")])
        #expect(KeyRange.prefixEnd(b("foo/")) == b("foo0"))
        #expect(KeyRange.prefixEnd([0x61, 0xff]) == [0x62])
        #expect(KeyRange.prefixEnd([0xff, 0xff]) == [0])
        let half = try s.range(b("foo"), rangeEnd: b("fop"))   // [foo, fop): fop excluded
        #expect(half.kvs.map(\.key) == [b("foo"), b("foo/1"), b("foo/2")])
        let from = try s.range(b("fop"), rangeEnd: [0])        // "\0": every key >= fop
        #expect(from.kvs.map(\.key) == [b("fop"), b("z")])
        let all = try s.range([0], rangeEnd: [0])
        #expect(all.count == 6)
        #expect(try s.range(b("nope")).kvs.isEmpty)
        #expect(try s.range(b("b"), rangeEnd: b("b")).kvs.isEmpty) // empty half-open range
    }

    @Test func limitCountKeysOnlyAndSort() throws {
        var s = KeyValueStore()
        try s.put(b("k1"), b("c"))
        try s.put(b("k2"), b("a"))
        try s.put(b("k3"), b("b"))
        try s.put(b("k1"), b("c2"))                            // k1: version 2, mod 5
        let limited = try s.range(b("k"), rangeEnd: b("l"), limit: 2)
        #expect(limited.kvs.map(\.key) == [b("k1"), b("k2")] && limited.more && limited.count == 3)
        let counted = try s.range(b("k"), rangeEnd: b("l"), countOnly: true)
        #expect(counted.kvs.isEmpty && counted.count == 3 && !counted.more)
        let keysOnly = try s.range(b("k"), rangeEnd: b("l"), keysOnly: true)
        #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty } && keysOnly.kvs.count == 3)
        let desc = try s.range(b("k"), rangeEnd: b("l"), limit: 2, sortOrder: .descend)
        #expect(desc.kvs.map(\.key) == [b("k3"), b("k2")] && desc.more)
        let byMod = try s.range(b("k"), rangeEnd: b("l"), sortOrder: .descend, sortTarget: .mod)
        #expect(byMod.kvs.map(\.modRevision) == [5, 4, 3])
        let byValue = try s.range(b("k"), rangeEnd: b("l"), sortOrder: .ascend, sortTarget: .value)
        #expect(byValue.kvs.map(\.value) == [b("a"), b("b"), b("c2")])
        let byVersion = try s.range(b("k"), rangeEnd: b("l"), sortOrder: .descend, sortTarget: .version)
        #expect(byVersion.kvs.first?.key == b("k1"))
        // etcd: order "none" with a target other than key sorts ascending by that target.
        let noneByValue = try s.range(b("k"), rangeEnd: b("l"), sortOrder: .none, sortTarget: .value)
        #expect(noneByValue.kvs.map(\.value) == [b("a"), b("b"), b("c2")])
        // A negative revision reads the current one, as etcd does.
        #expect(try s.range(b("k1"), revision: -1).kvs.first?.version == 2)
    }

    /// A limited read in key order stops at its limit: it must answer what the whole range, cut
    /// afterwards, answers (keys deleted, recreated and read at older revisions included), with
    /// the total counted unless the reader said it does not want it.
    @Test func limitedReadsInKeyOrderMatchTheWholeRangeCut() throws {
        var s = KeyValueStore()
        for i in 0..<12 { try s.put(b("t/\(i % 10)\(i)"), b("v\(i)")) }
        try s.deleteRange(b("t/22"))
        try s.deleteRange(b("t/55"))
        try s.put(b("t/55"), b("again"))
        try s.deleteRange(b("t/99"))
        try s.put(b("u"), b("outside"))
        let end = KeyRange.prefixEnd(b("t/"))
        for revision in [Int64(0), 8, 14, s.revision] {
            let whole = try s.range(b("t/"), rangeEnd: end, revision: revision)
            for limit in 1...(whole.kvs.count + 1) {
                for keysOnly in [false, true] {
                    for order in [SortOrder.none, .ascend] {
                        for countTotal in [true, false] {
                            let request = RangeRequest(key: b("t/"), rangeEnd: end, revision: revision, limit: Int64(limit),
                                                       keysOnly: keysOnly, sortOrder: order, countTotal: countTotal)
                            let page = try s.range(request)
                            let expected = whole.kvs.prefix(limit).map { kv in
                                var kv = kv
                                if keysOnly { kv.value = [] }
                                return kv
                            }
                            #expect(page.kvs == Array(expected), "revision \(revision) limit \(limit)")
                            #expect(page.more == (whole.kvs.count > limit))
                            #expect(page.count == (countTotal ? whole.count : Int64(page.kvs.count)))
                            #expect(page.revision == whole.revision)
                        }
                    }
                }
            }
        }
    }

    @Test(arguments: CompareResult.allCases)
    func txnComparesEachTargetAndOperator(_ op: CompareResult) throws {
        var s = KeyValueStore()
        let lease = try s.grantLease(id: 7, ttl: 10, now: 0)
        try s.put(b("k"), b("m"), lease: lease)   // revision 2: create 2, mod 2, version 1
        try s.put(b("k"), b("m"), lease: lease)   // revision 3: create 2, mod 3, version 2
        // For each target: (smaller, equal, larger) reference values against k's field.
        let cases: [(CompareTarget, CompareTarget, CompareTarget)] = [
            (.version(1), .version(2), .version(3)),
            (.createRevision(1), .createRevision(2), .createRevision(3)),
            (.modRevision(2), .modRevision(3), .modRevision(4)),
            (.value(b("l")), .value(b("m")), .value(b("n"))),
            (.lease(6), .lease(7), .lease(8)),
        ]
        for (smaller, equal, larger) in cases {
            // field > smaller, field == equal, field < larger.
            let expected: [(CompareTarget, Bool)] = switch op {
            case .equal: [(smaller, false), (equal, true), (larger, false)]
            case .notEqual: [(smaller, true), (equal, false), (larger, true)]
            case .greater: [(smaller, true), (equal, false), (larger, false)]
            case .less: [(smaller, false), (equal, false), (larger, true)]
            }
            for (target, want) in expected {
                let r = try s.txn(TxnRequest(compares: [Compare(key: b("k"), op, target)],
                                             success: [.range(RangeRequest(key: b("k")))], failure: []))
                #expect(r.succeeded == want, "\(op) \(target)")
                #expect(r.revision == 3)          // a read-only txn does not bump the revision
            }
        }
    }

    @Test func txnMissingKeyAndSharedRevision() throws {
        var s = KeyValueStore()
        // Missing key: version/create/mod compare as 0, a value compare is false.
        var r = try s.txn(TxnRequest(compares: [Compare(key: b("x"), .equal, .version(0))],
                                     success: [.put(PutRequest(key: b("x"), value: b("1"))),
                                               .put(PutRequest(key: b("y"), value: b("2"))),
                                               .range(RangeRequest(key: b("x")))],
                                     failure: []))
        #expect(r.succeeded && r.revision == 2)   // two puts, one revision: 1 + 1
        #expect(s.get(b("x"))?.modRevision == 2 && s.get(b("y"))?.modRevision == 2)
        // The range after the put in the same txn sees it.
        guard case .range(let seen) = r.responses[2] else { Issue.record("not a range"); return }
        #expect(seen.kvs.first?.value == b("1") && seen.revision == 2)
        r = try s.txn(TxnRequest(compares: [Compare(key: b("none"), .notEqual, .value(b("q")))],
                                 success: [], failure: [.deleteRange(DeleteRangeRequest(key: b("x"), rangeEnd: b("z"), prevKV: true))]))
        #expect(!r.succeeded && r.revision == 3)  // failure branch deleted x and y at revision 3
        guard case .deleteRange(let del) = r.responses[0] else { Issue.record("not a delete"); return }
        #expect(del.deleted == 2 && del.prevKVs.count == 2 && del.revision == 3)
        // Duplicate keys in one branch are refused, nothing changes.
        let before = s
        #expect(throws: StoreError.duplicateKey) {
            try s.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: b("a"), value: [])),
                                                         .put(PutRequest(key: b("a"), value: []))]))
        }
        #expect(throws: StoreError.duplicateKey) {
            try s.txn(TxnRequest(compares: [], success: [.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("c"))),
                                                         .put(PutRequest(key: b("b"), value: []))]))
        }
        #expect(s == before)
    }

    @Test func historyReadsAndCompaction() throws {
        var s = KeyValueStore()
        try s.put(b("a"), b("1"))   // 2
        try s.put(b("a"), b("2"))   // 3
        try s.put(b("b"), b("1"))   // 4
        try s.deleteRange(b("b"))   // 5
        try s.put(b("a"), b("3"))   // 6
        #expect(try s.range(b("a"), revision: 2).kvs.first?.value == b("1"))
        #expect(try s.range(b("a"), revision: 3).kvs.first?.version == 2)
        #expect(try s.range(b("b"), revision: 4).kvs.count == 1)
        #expect(try s.range(b("b"), revision: 5).kvs.isEmpty)
        #expect(try s.range(b("a"), revision: 1).kvs.isEmpty)
        #expect(throws: StoreError.futureRevision(requested: 7, current: 6)) { try s.range(b("a"), revision: 7) }
        try s.compact(4)
        #expect(s.compactRevision == 4 && s.revision == 6)   // compaction does not bump the revision
        #expect(throws: StoreError.compacted(4)) { try s.range(b("a"), revision: 3) }
        // At the compaction revision itself the state is intact: a = "2" (mod 3), b = "1".
        let at4 = try s.range([0], rangeEnd: [0], revision: 4)
        #expect(at4.kvs.map(\.value) == [b("2"), b("1")])
        #expect(try s.range(b("a")).kvs.first?.value == b("3"))
        #expect(throws: StoreError.compacted(4)) { try s.compact(4) }
        #expect(throws: StoreError.compacted(4)) { try s.events(key: b("a"), fromRevision: 3) }
        try s.compact(6)
        #expect(s.history[b("b")] == nil)                    // b's tombstone and history are gone
        #expect(try s.range(b("b"), revision: 6).kvs.isEmpty)
        #expect(throws: StoreError.futureRevision(requested: 7, current: 6)) { try s.compact(7) }
    }

    @Test func badInputChangesNothing() throws {
        var s = KeyValueStore()
        try s.put(b("a"), b("1"))
        let before = s
        #expect(throws: StoreError.emptyKey) { try s.put([], b("x")) }
        #expect(throws: StoreError.requestTooLarge(size: 1 + maxRequestBytes, limit: maxRequestBytes)) {
            try s.put(b("a"), [UInt8](repeating: 1, count: maxRequestBytes))
        }
        #expect(throws: StoreError.invalidRange) { try s.range(b("b"), rangeEnd: b("a")) }
        #expect(throws: StoreError.invalidRange) { try s.deleteRange(b("b"), rangeEnd: b("a")) }
        #expect(throws: StoreError.emptyKey) { try s.deleteRange([]) }
        #expect(throws: StoreError.leaseNotFound(42)) { try s.put(b("a"), b("2"), lease: 42) }
        // A malformed op in the branch that would not run still fails the whole txn (etcd's
        // checkTxnRequest); an unknown lease fails the branch that runs, after the compares.
        #expect(throws: StoreError.emptyKey) {
            try s.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: b("a"), value: b("t")))],
                                 failure: [.put(PutRequest(key: [], value: []))]))
        }
        #expect(throws: StoreError.leaseNotFound(9)) {
            try s.txn(TxnRequest(compares: [Compare(key: b("a"), .equal, .version(1))],
                                 success: [.put(PutRequest(key: b("a"), value: b("t"))),
                                           .put(PutRequest(key: b("c"), value: [], lease: 9))]))
        }
        #expect(throws: StoreError.futureRevision(requested: 3, current: 2)) {
            try s.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: b("b"), value: b("t"))),
                                                         .range(RangeRequest(key: b("a"), revision: 3))]))
        }
        #expect(throws: StoreError.leaseNotFound(5)) { try s.revokeLease(5) }
        #expect(throws: StoreError.leaseNotFound(5)) { try s.keepAlive(5, now: 0) }
        #expect(throws: StoreError.invalidTTL(0)) { try s.grantLease(id: 1, ttl: 0, now: 0) }
        #expect(s == before)
        // An unknown lease in the branch that does not run is not an error in etcd.
        let ran = try s.txn(TxnRequest(compares: [Compare(key: b("a"), .equal, .version(1))],
                                       success: [.range(RangeRequest(key: b("a")))],
                                       failure: [.put(PutRequest(key: b("c"), value: [], lease: 9))]))
        #expect(ran.succeeded && s == before)
        // A put that exactly fits is accepted.
        try s.put(b("a"), [UInt8](repeating: 1, count: maxRequestBytes - 1))
    }

    @Test func leases() throws {
        var s = KeyValueStore()
        let l1 = try s.grantLease(id: 0, ttl: 10, now: 1_000)   // id 0: store picks 1
        #expect(l1 == 1)
        let l2 = try s.grantLease(id: 100, ttl: 5, now: 1_000)
        #expect(try s.grantLease(id: 0, ttl: 50, now: 1_000) == 101) // after 100 comes 101
        #expect(throws: StoreError.leaseExists(100)) { try s.grantLease(id: 100, ttl: 5, now: 0) }
        #expect(s.revision == 1)                                 // grants do not bump the revision
        try s.put(b("a"), b("1"), lease: l1)                     // 2
        try s.put(b("b"), b("1"), lease: l1)                     // 3
        try s.put(b("c"), b("1"), lease: l2)                     // 4
        try s.put(b("b"), b("2"))                                // 5: b detached from l1
        #expect(try s.timeToLive(l1, now: 4_500) == LeaseStatus(id: 1, ttl: 6, grantedTTL: 10, keys: [b("a")]))
        // l2 expires at 1_000 + 5_000 = 6_000; l1 at 11_000.
        #expect(s.expiredLeases(now: 5_999) == [])
        #expect(s.expiredLeases(now: 6_000) == [100])
        #expect(s.get(b("c")) != nil)                            // the store never expires on its own
        #expect(try s.timeToLive(l2, now: 7_000).ttl == 0)
        // Expired but not yet revoked: a keep-alive cannot revive it (etcd: lease not found).
        #expect(throws: StoreError.leaseNotFound(100)) { try s.keepAlive(l2, now: 7_000) }
        try s.keepAlive(l2, now: 5_000)                          // before expiry: now expires at 10_000
        #expect(s.expiredLeases(now: 10_000) == [100])
        // A new leader renews everything: l1 (11_000) and l2 (10_000) both get 10_500 + TTL at least.
        s.renewAllLeases(now: 10_500)
        #expect(try s.timeToLive(l1, now: 10_500).ttl == 10 && s.timeToLive(l2, now: 10_500).ttl == 5)
        #expect(s.expiredLeases(now: 15_500) == [100])           // 10_500 + 5_000
        #expect(s.expiredLeases(now: 20_500) == [1, 100])
        let rev = try s.revokeLease(l1)                          // deletes a at revision 6
        #expect(rev == 6 && s.get(b("a")) == nil && s.get(b("b")) != nil)
        #expect(throws: StoreError.leaseNotFound(1)) { try s.timeToLive(l1, now: 0) }
        #expect(s.leaseIDs == [100, 101])
        #expect(try s.revokeLease(101) == 6)                     // no keys: no new revision
    }

    @Test func revokeDeletesAllKeysAtOneRevision() throws {
        var s = KeyValueStore()
        let l = try s.grantLease(id: 3, ttl: 60, now: 0)
        for k in ["x", "y", "z"] { try s.put(b(k), b("v"), lease: l) }   // revisions 2, 3, 4
        try s.revokeLease(l)                                              // revision 5 for all three
        let events = try s.events(key: [0], rangeEnd: [0], fromRevision: 5)
        #expect(events.map(\.kind) == [.delete, .delete, .delete])
        #expect(events.map(\.kv.modRevision) == [5, 5, 5])
        #expect(events.map(\.kv.key) == [b("x"), b("y"), b("z")])
    }

    @Test func watchEventSequences() throws {
        var s = KeyValueStore()
        try s.put(b("w/a"), b("1"))                  // 2
        try s.put(b("other"), b("1"))                // 3
        try s.put(b("w/a"), b("2"))                  // 4
        try s.deleteRange(b("w/a"))                  // 5
        _ = try s.txn(TxnRequest(compares: [], success: [.put(PutRequest(key: b("w/b"), value: b("1"))),
                                                         .put(PutRequest(key: b("w/c"), value: b("1")))])) // 6
        let end = KeyRange.prefixEnd(b("w/"))
        let all = try s.events(key: b("w/"), rangeEnd: end, fromRevision: 1, prevKV: true)
        #expect(all.map(\.kv.modRevision) == [2, 4, 5, 6, 6])
        #expect(all.map(\.kind) == [.put, .put, .delete, .put, .put])
        #expect(all[1].prevKV?.value == b("1") && all[0].prevKV == nil)
        #expect(all[2].prevKV?.value == b("2") && all[2].kv.value.isEmpty && all[2].kv.version == 0)
        let from5 = try s.events(key: b("w/"), rangeEnd: end, fromRevision: 5)
        #expect(from5.map(\.kv.modRevision) == [5, 6, 6] && from5.allSatisfy { $0.prevKV == nil })
        #expect(try s.events(key: b("w/a"), fromRevision: 3).map(\.kv.modRevision) == [4, 5])
        #expect(try s.events(key: b("w/a"), fromRevision: 0).isEmpty)  // 0: only future events
        #expect(try s.events(key: b("w/a"), fromRevision: 7).isEmpty)
        try s.compact(5)
        #expect(try s.events(key: b("w/"), rangeEnd: end, fromRevision: 5).count == 3)
        #expect(throws: StoreError.compacted(5)) { try s.events(key: b("w/"), rangeEnd: end, fromRevision: 4) }
    }
}
