import Foundation
import Testing
@testable import EtcdBackend
@testable import Store
import EtcdTestSupport
import TestGate

// NamespacedStore (`master --etcd-prefix`): the prefix mapping itself, the flag's validation, the
// conformance scenarios through a prefix (on MemoryStore, beside another namespace's keys that must
// come through untouched), and isolation on a real etcd.

private func u8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Keys of another user of the same store, outside every namespace the tests use: unprefixed
/// keys, one inside another namespace, and the edges of the namespaces "/a" and "/b" ("/a" itself,
/// and "/b", where "/a"'s range ends). No scenario run through a namespace may see, change or
/// delete them.
private let foreignKeys: [[UInt8]] = [u8("/orchestrator/tasks/t1"), u8("/a"), u8("/b"), u8("/c/orchestrator/tasks/t1"), [0xff, 0xff]]

@Suite struct NamespacedStoreMappingTests {
    @Test("range ends: none, to the end of the key space, a prefix range, and a plain end")
    func rangeEnds() {
        let store = NamespacedStore(base: MemoryStore(), prefix: u8("/a"))
        #expect(store.inside(u8("/k")) == u8("/a/k"))
        #expect(store.insideEnd([]) == [])
        // "\0" means "every key from `key` on": inside the namespace that ends where the prefix's
        // own range ends ("/a" -> "/b"), never at the end of etcd's key space.
        #expect(store.insideEnd([0]) == u8("/b"))
        // A prefix range end inside is the prefix range end of the prefixed key.
        #expect(store.insideEnd(KeyRange.prefixEnd(u8("/orchestrator/"))) == KeyRange.prefixEnd(u8("/a/orchestrator/")))
        #expect(store.insideEnd(u8("/z")) == u8("/a/z"))
        // A prefix of 0xff bytes has no end but the end of the key space.
        let top = NamespacedStore(base: MemoryStore(), prefix: [0xff, 0xff])
        #expect(top.insideEnd([0]) == [0])
        #expect(store.outside(u8("/a/k")) == u8("/k"))
    }

    @Test("--etcd-prefix validation: accepted and refused values, with the reason")
    func validation() throws {
        for good in ["", "/a", "/team-a", "/clusters/prod_1", "/" + String(repeating: "x", count: 255)] {
            try NamespacedStore<MemoryStore>.validate(good)
        }
        let bad: [(String, String)] = [
            ("team-a", "must start with '/'"), ("/", "'/' alone"), ("/team-a/", "must not end with '/'"),
            ("/team a", "printable ASCII"), ("/tëam", "printable ASCII"), ("/a\n", "printable ASCII"),
            ("/" + String(repeating: "x", count: 256), "longer than 256"),
        ]
        for (prefix, reason) in bad {
            do {
                try NamespacedStore<MemoryStore>.validate(prefix)
                Issue.record("\(prefix.debugDescription) was accepted")
            } catch {
                #expect(error.description.contains(reason), "\(prefix.debugDescription): \(error.description)")
                #expect(error.description.contains("--etcd-prefix"))
            }
        }
    }

    @Test("an empty key or an inverted range is refused as without a prefix")
    func refusedBeforePrefixing() async throws {
        let store = NamespacedStore(base: MemoryStore(), prefix: u8("/a"))
        await StoreConformance.expectStoreError({ $0 == .emptyKey }) { _ = try await store.put([], u8("v")) }
        await StoreConformance.expectStoreError({ $0 == .emptyKey }) { _ = try await store.get([]) }
        await StoreConformance.expectStoreError({ $0 == .invalidRange }) {
            _ = try await store.range(RangeRequest(key: u8("b"), rangeEnd: u8("a")), consistency: .linearizable)
        }
        await StoreConformance.expectStoreError({ $0 == .emptyKey }) {
            _ = try await store.txn(TxnRequest(compares: [], success: [.deleteRange(DeleteRangeRequest(key: []))]))
        }
    }
}

/// The conformance scenarios through a namespace, on a MemoryStore that also holds another user's
/// keys: the scenarios pass unchanged and the other keys stay exactly as they were.
@Suite struct NamespacedStoreConformanceTests {
    @Test(arguments: StoreConformance.Scenario.allCases)
    func conformance(_ scenario: StoreConformance.Scenario) async throws {
        let time = ManualTime()
        let base = MemoryStore(now: time.now)
        for key in foreignKeys { try await base.put(key, u8("foreign")) }
        let before = try await base.range(RangeRequest(key: [0], rangeEnd: [0]), consistency: .linearizable).kvs
        try await StoreConformance.run(scenario) {
            StoreConformance.Subject(store: NamespacedStore(base: base, prefix: u8("/ns")), advanceClock: { time.advance($0) })
        }
        let after = try await base.range(RangeRequest(key: [0], rangeEnd: [0]), consistency: .linearizable).kvs
        #expect(after.filter { !$0.key.starts(with: u8("/ns")) } == before, "a scenario reached keys outside its namespace")
        #expect(after.allSatisfy { foreignKeys.contains($0.key) || $0.key.starts(with: u8("/ns")) })
    }
}

/// Two namespaces on one real etcd 3.4, as two clusters with different `--etcd-prefix` share it.
@Suite("NamespacedStore against a real etcd", .serialized, .heavy, .timeLimit(.minutes(2)))
struct NamespacedEtcdTests {
    @Test("two prefixes on one etcd do not see each other; ranges, txns, deletes, watches and leases stay inside")
    func isolation() async throws {
        try await EtcdProcess.with { etcd, raw in
            let a = NamespacedStore(base: raw, prefix: u8("/a"))
            let b = NamespacedStore(base: raw, prefix: u8("/b"))
            // Another user's keys right beside both namespaces.
            for key in foreignKeys { try await raw.put(key, u8("foreign")) }
            let tasks = u8("/orchestrator/tasks/")
            for id in ["t1", "t2", "t3"] {
                try await a.put(tasks + u8(id), u8("a-\(id)"))
                try await b.put(tasks + u8(id), u8("b-\(id)"))
            }
            try await a.put(u8("/orchestrator/leader"), u8("a-leader"))

            // Gets and prefix lists see only their own keys, returned without the prefix.
            #expect(try await a.get(tasks + u8("t1"))?.value == u8("a-t1"))
            #expect(try await b.get(tasks + u8("t1"))?.value == u8("b-t1"))
            #expect(try await b.get(u8("/orchestrator/leader")) == nil)
            let listA = try await a.list(prefix: tasks)
            #expect(listA.kvs.map(\.key) == ["t1", "t2", "t3"].map { tasks + u8($0) })
            #expect(listA.kvs.map(\.value) == ["t1", "t2", "t3"].map { u8("a-\($0)") })
            // "From this key to the end" ends at the namespace's end, not etcd's.
            let fromKey = try await a.range(RangeRequest(key: u8("/orchestrator/tasks/t2"), rangeEnd: [0]), consistency: .linearizable)
            #expect(fromKey.kvs.map(\.key) == [tasks + u8("t2"), tasks + u8("t3")])
            let everything = try await b.range(RangeRequest(key: [0], rangeEnd: [0], countOnly: true), consistency: .linearizable)
            #expect(everything.count == 3)
            let limited = try await a.range(RangeRequest(key: tasks, rangeEnd: KeyRange.prefixEnd(tasks), limit: 2), consistency: .serializable)
            #expect(limited.kvs.count == 2 && limited.more && limited.count == 3)

            // Txn compares and ops act on the namespace's key; the other namespace's same key is untouched.
            let key = tasks + u8("t1")
            let modA = try #require(try await a.get(key)).modRevision
            let swap = try await a.txn(TxnRequest(
                compares: [Compare(key: key, .equal, .modRevision(modA))],
                success: [.put(PutRequest(key: key, value: u8("a-t1-v2"), prevKV: true)), .range(RangeRequest(key: key))]))
            #expect(swap.succeeded)
            guard case .put(let put) = swap.responses.first, case .range(let read) = swap.responses.last else {
                Issue.record("unexpected txn responses \(swap.responses)")
                return
            }
            #expect(put.prevKV?.key == key && put.prevKV?.value == u8("a-t1"))
            #expect(read.kvs.map(\.key) == [key] && read.kvs.first?.value == u8("a-t1-v2"))
            // b's copy has another mod revision: the same compare fails there.
            let stale = try await b.txn(TxnRequest(compares: [Compare(key: key, .equal, .value(u8("a-t1-v2")))],
                                                   success: [.deleteRange(DeleteRangeRequest(key: key))]))
            #expect(!stale.succeeded)
            #expect(try await b.get(key)?.value == u8("b-t1"))

            // A watch on a's tasks sees a's changes only, with keys (and previous values) stripped.
            let start = try await raw.range(RangeRequest(key: u8("x")), consistency: .linearizable).revision
            let watch = a.watch(key: tasks, rangeEnd: KeyRange.prefixEnd(tasks), fromRevision: start + 1, prevKV: true)
            try await b.put(tasks + u8("t2"), u8("b-t2-v2"))
            try await a.put(tasks + u8("t2"), u8("a-t2-v2"))
            // Deleting everything from a's first key on removes a's keys only.
            let deleted = try await a.deleteRange(DeleteRangeRequest(key: [0], rangeEnd: [0], prevKV: true))
            #expect(deleted.deleted == 4)
            #expect(deleted.prevKVs.map(\.key).sorted { $0.lexicographicallyPrecedes($1) }
                == [u8("/orchestrator/leader")] + ["t1", "t2", "t3"].map { tasks + u8($0) })
            let events = try await StoreConformance.collect(watch, events: 4)
            #expect(events.map(\.kind) == [.put, .delete, .delete, .delete])
            #expect(events.map(\.kv.key) == [tasks + u8("t2"), tasks + u8("t1"), tasks + u8("t2"), tasks + u8("t3")])
            #expect(events[0].prevKV?.key == tasks + u8("t2") && events[0].prevKV?.value == u8("a-t2"))
            #expect(try await b.list(prefix: tasks).kvs.map(\.value) == [u8("b-t1"), u8("b-t2-v2"), u8("b-t3")])
            for key in foreignKeys { #expect(try await raw.get(key)?.value == u8("foreign"), "foreign key \(key) changed") }

            // A lease reports its keys without the prefix.
            let lease = try await b.grantLease(ttl: 30, id: 0)
            try await b.put(u8("/orchestrator/election"), u8("m1"), lease: lease.id)
            #expect(try await b.timeToLive(lease.id).keys == [u8("/orchestrator/election")])

            // etcdctl sees b's keys under its prefix, as an operator would look for them (with
            // the foreign key "/b", which starts with the prefix too).
            let listed = try etcdctl(etcd, ["get", "--prefix", "/b", "--keys-only"])
            let keys = listed.split(separator: "\n").map(String.init)
            #expect(keys == ["/b", "/b/orchestrator/election", "/b/orchestrator/tasks/t1", "/b/orchestrator/tasks/t2", "/b/orchestrator/tasks/t3"],
                    "etcdctl get --prefix /b: \(listed)")
        }
    }

    /// Runs etcdctl (v3 API) against `etcd`; returns its standard output.
    private func etcdctl(_ etcd: EtcdProcess, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.environment["ETCDCTL_BINARY"] ?? "/usr/bin/etcdctl")
        process.arguments = ["--endpoints", etcd.clientURL] + arguments
        process.environment = ["ETCDCTL_API": "3"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "etcdctl \(arguments) exited with \(process.terminationStatus)")
        return String(decoding: data, as: UTF8.self)
    }

    @Test(arguments: [StoreConformance.Scenario.prefixRangeLimitCount, .txnSuccessAndFailure, .watchFromRevision, .leaseGrantAttachRevoke])
    func conformance(_ scenario: StoreConformance.Scenario) async throws {
        try await StoreConformance.run(scenario) {
            let etcd = try await EtcdProcess.start()
            let store: EtcdStore
            do { store = try etcd.makeStore() } catch {
                await etcd.stop()
                throw error
            }
            return StoreConformance.Subject(
                store: NamespacedStore(base: store, prefix: u8("/ns")), advanceClock: nil,
                shutdown: {
                    try? await store.shutdown()
                    await etcd.stop()
                })
        }
    }
}
