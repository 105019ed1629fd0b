import Raft
import Testing
@testable import Store
import TestGate

/// Request ids: a write proposed twice (a retry after a lost reply) is applied once, and the retry
/// gets the first application's response.
@Suite struct AppliedRequestsTests {
    static let put = Command.put(PutRequest(key: Array("k".utf8), value: Array("v".utf8)))

    @Test("a duplicate identified command changes nothing and answers as the first time")
    func duplicateIsNotApplied() throws {
        var store = KeyValueStore()
        let id = RequestID(high: 1, low: 2)
        let first = store.apply(.identified(id, Self.put))
        let revision = store.revision
        let second = store.apply(.identified(id, Self.put))
        #expect(second.response == first.response)
        #expect(second.events.isEmpty)
        #expect(store.revision == revision)
        #expect(try store.range(Array("k".utf8)).kvs.first?.version == 1)
        // Another id is another write.
        _ = store.apply(.identified(RequestID(high: 1, low: 3), Self.put))
        #expect(store.revision == revision + 1)
    }

    @Test("a txn create-if-absent retried with the same id still reports success, not a failed compare")
    func retriedCreateSucceeds() {
        var store = KeyValueStore()
        let key = Array("/orchestrator/tasks/t1".utf8)
        let create = Command.txn(TxnRequest(compares: [Compare(key: key, .equal, .createRevision(0))],
                                            success: [.put(PutRequest(key: key, value: [1]))]))
        let id = RequestID(high: 9, low: 9)
        guard case .txn(let first) = store.apply(.identified(id, create)).response,
              case .txn(let retry) = store.apply(.identified(id, create)).response else {
            Issue.record("not a txn response")
            return
        }
        #expect(first.succeeded && retry.succeeded)
        #expect(retry.revision == first.revision)
        // Without the id, the same command is a second write whose compare fails.
        guard case .txn(let unidentified) = store.apply(create).response else { return }
        #expect(!unidentified.succeeded)
    }

    @Test("the codec round-trips identified commands and refuses one nested in another")
    func codec() throws {
        let command = Command.identified(RequestID(high: .max, low: 0x0102_0304), Self.put)
        #expect(try Command(decoding: command.encoded()) == command)
        let nested = Command.identified(RequestID(high: 1, low: 1), command).encoded()
        #expect(throws: StoreError.self) { try Command(decoding: nested) }
    }

    @Test("snapshots keep the applied requests in order; a format-1 image loads with none, a format-2 one with no alarms")
    func snapshots() throws {
        var store = KeyValueStore()
        for i in 0..<10 { _ = store.apply(.identified(RequestID(high: 0, low: UInt64(i)), Self.put)) }
        let restored = try KeyValueStore(snapshot: store.snapshotBytes())
        #expect(restored == store)
        #expect(restored.appliedRequests.count == 10)
        #expect(restored.snapshotBytes() == store.snapshotBytes())
        // A duplicate after a restore is still recognised.
        var copy = restored
        let before = copy.revision
        _ = copy.apply(.identified(RequestID(high: 0, low: 3), Self.put))
        #expect(copy.revision == before)
        // Format 2: without the trailing alarm section; format 1 also without the applied
        // requests' (each empty section is one uvarint 0).
        var plain = KeyValueStore()
        _ = plain.apply(Self.put)
        var image = plain.snapshotBytes(format: 2)
        let two = try KeyValueStore(snapshot: image)
        #expect(two.revision == plain.revision && two.alarms.isEmpty && two == plain)
        image[0] = 1
        image.removeLast()
        let old = try KeyValueStore(snapshot: image)
        #expect(old.revision == plain.revision && old.appliedRequests.count == 0)
    }

    @Test("the table is bounded by count, evicting the oldest first, the same way on every replica")
    func bounded() {
        var a = AppliedRequests(), b = AppliedRequests()
        let total = AppliedRequests.maxEntries + 10
        for i in 0..<total {
            a.record(RequestID(high: 0, low: UInt64(i)), response: [1])
            b.record(RequestID(high: 0, low: UInt64(i)), response: [1])
        }
        #expect(a.count == AppliedRequests.maxEntries)
        #expect(a.response(for: RequestID(high: 0, low: 9)) == nil)
        #expect(a.response(for: RequestID(high: 0, low: 10)) != nil)
        #expect(a == b)
        #expect(a.entries.first?.id == RequestID(high: 0, low: 10))
    }

    @Test("the table is bounded by bytes")
    func boundedByBytes() {
        var table = AppliedRequests()
        let big = [UInt8](repeating: 7, count: AppliedRequests.maxBytes / 4 + 1)
        for i in 0..<4 { table.record(RequestID(high: 1, low: UInt64(i)), response: big) }
        #expect(table.count == 3)
        #expect(table.response(for: RequestID(high: 1, low: 0)) == nil)
    }
}

/// The same through three replicas: a follower whose forwarded write lost its reply retries it, and
/// the cluster applies it once.
@Suite(.serialized, .heavy) struct ExactlyOnceForwardingTests {
    @Test("a forwarded create whose reply is lost is retried under its request id: one write, reported as succeeded")
    func lostReplyIsNotAppliedTwice() async throws {
        let lost = RaftStoreCluster.LostReplies()
        let cluster = try RaftStoreCluster(lostReplies: lost)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let follower = cluster.stores[cluster.follower(of: leader)]!
        let key = Array("/orchestrator/tasks/once".utf8)
        let before = try await follower.range(RangeRequest(key: [0], rangeEnd: [0]), consistency: .linearizable).revision
        lost.lose(next: 1)
        let response = try await follower.txn(TxnRequest(compares: [Compare(key: key, .equal, .createRevision(0))],
                                                         success: [.put(PutRequest(key: key, value: [1]))]))
        #expect(response.succeeded, "the retry must see the first application's success, not its own failed compare")
        #expect(!lost.take(), "the lost reply was used")
        let after = try await follower.range(RangeRequest(key: [0], rangeEnd: [0]), consistency: .linearizable)
        #expect(after.revision == before + 1, "applied once: one revision")
        let kv = try await follower.range(RangeRequest(key: key), consistency: .linearizable).kvs.first
        #expect(kv?.version == 1)
    }

    @Test("a forwarded put whose reply is lost twice is still applied once")
    func putAppliedOnce() async throws {
        let lost = RaftStoreCluster.LostReplies()
        let cluster = try RaftStoreCluster(lostReplies: lost)
        defer { cluster.shutdown() }
        let leader = try await cluster.waitForLeader()
        let follower = cluster.stores[cluster.follower(of: leader)]!
        let key = Array("counter".utf8)
        lost.lose(next: 2)
        let put = try await follower.put(PutRequest(key: key, value: [1]))
        let kv = try await follower.range(RangeRequest(key: key), consistency: .linearizable).kvs.first
        #expect(kv?.version == 1, "one put, not three")
        #expect(kv?.modRevision == put.revision)
    }
}

extension AppliedRequestsTests {
    @Test("a rejected command is not remembered: the store is unchanged, and its retry runs again")
    func rejectedIsNotRemembered() {
        var store = KeyValueStore()
        let before = store
        let id = RequestID(high: 5, low: 5)
        let withMissingLease = Command.put(PutRequest(key: Array("k".utf8), value: [1], lease: 42))
        guard case .failure = store.apply(.identified(id, withMissingLease)).response else {
            Issue.record("a put with a missing lease must be rejected")
            return
        }
        #expect(store == before)
        _ = store.apply(.leaseGrant(id: 42, ttl: 60, now: 0))
        guard case .put = store.apply(.identified(id, withMissingLease)).response else {
            Issue.record("the retry, now valid, must apply")
            return
        }
    }
}

/// `snapshotBytes` reserves `snapshotSizeBound` up front: the bound must hold (else the image is
/// copied while written) and stay near the image (else memory is reserved for nothing).
@Suite struct SnapshotSizeBoundTests {
    @Test("the reserved size bounds the image and is within twice its size")
    func bound() throws {
        var store = KeyValueStore()
        let lease = try store.grantLease(id: .max - 7, ttl: 60, now: 1_796_000_000_000)
        for i in 0..<300 {
            try store.put(Array("tasks/\(i % 120)".utf8), Array(repeating: UInt8(i % 251), count: i % 700),
                          lease: i % 10 == 0 ? lease : 0)
        }
        for i in stride(from: 0, to: 120, by: 7) { try store.deleteRange(Array("tasks/\(i)".utf8)) }
        for i in 0..<40 { _ = store.apply(.identified(RequestID(high: .max, low: UInt64(i)), AppliedRequestsTests.put)) }
        for compactAt in [Int64(0), store.revision / 2, store.revision] {
            var s = store
            if compactAt > 0 { try s.compact(compactAt) }
            let image = s.snapshotBytes()
            let bound = s.snapshotSizeBound(requests: s.appliedRequests.entries)
            #expect(bound >= image.count, "compacted at \(compactAt)")
            #expect(bound <= 2 * image.count, "compacted at \(compactAt): \(bound) for \(image.count)")
        }
    }
}
