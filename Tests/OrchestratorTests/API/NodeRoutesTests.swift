import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Testing
@testable import Orchestrator

@Suite struct NodeRoutesTests {
    @Test("list and get nodes: flat snake_case views with free resources")
    func listAndGet() async throws {
        let f = APIFixture()
        try await f.addNode("n2")
        try await f.addNode("n1", cpu: 2000, memory: 4096)
        try await f.test { client in
            let id = try await client.createTask()
            try await f.place(id, on: "n1")
            let list = try await client.send(.get, "/api/v1/nodes")
            let nodes = try #require(list.json["nodes"] as? [[String: Any]])
            #expect(nodes.compactMap { $0["id"] as? String } == ["n1", "n2"])
            let n1 = nodes[0]
            #expect(n1["state"] as? String == "ready")
            #expect(n1["schedulable"] as? Bool == true)
            #expect(n1["task_count"] as? Int == 1)
            #expect(n1["allocated"] as? [String: Int] == ["cpu": 500, "memory": 256])
            #expect(n1["free"] as? [String: Int] == ["cpu": 1500, "memory": 3840])
            #expect(n1["last_heartbeat"] as? Int == Int(APIFixture.now))
            #expect(n1["address"] as? String == "10.0.0.1:7000")

            let one = try await client.send(.get, "/api/v1/nodes/n2?consistent=true")
            #expect(one.status == .ok)
            #expect(one.json["id"] as? String == "n2")
            let missing = try await client.send(.get, "/api/v1/nodes/zz")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
        }
    }

    @Test("last_heartbeat shows the heartbeat key, which is newer than the record's join time")
    func heartbeatFromItsKey() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.addNode("n2")
        try await f.repository.recordHeartbeat(nodeID: "n1", now: APIFixture.now + 4_321)
        try await f.test { client in
            let list = try await client.send(.get, "/api/v1/nodes")
            let nodes = try #require(list.json["nodes"] as? [[String: Any]])
            #expect(nodes.first { $0["id"] as? String == "n1" }?["last_heartbeat"] as? Int == Int(APIFixture.now + 4_321))
            #expect(nodes.first { $0["id"] as? String == "n2" }?["last_heartbeat"] as? Int == Int(APIFixture.now))
            let one = try await client.send(.get, "/api/v1/nodes/n1")
            #expect(one.json["last_heartbeat"] as? Int == Int(APIFixture.now + 4_321))
        }
    }

    @Test("cordon, uncordon, drain: state and schedulability, idempotent, 404 for unknown nodes")
    func operations() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        try await f.addNode("gone", state: .down)
        try await f.test { client in
            let cordoned = try await client.send(.post, "/api/v1/nodes/n1/cordon")
            #expect(cordoned.status == .ok)
            #expect(cordoned.json["schedulable"] as? Bool == false)
            #expect(cordoned.json["state"] as? String == "ready")
            let revision = try await f.snapshot().revision
            #expect(try await client.send(.post, "/api/v1/nodes/n1/cordon").status == .ok)
            #expect(try await f.snapshot().revision == revision, "a second cordon writes nothing")

            let uncordoned = try await client.send(.post, "/api/v1/nodes/n1/uncordon")
            #expect(uncordoned.json["schedulable"] as? Bool == true)

            let drained = try await client.send(.post, "/api/v1/nodes/n1/drain", body: "ignored")
            #expect(drained.json["state"] as? String == "draining")
            #expect(drained.json["schedulable"] as? Bool == false)
            let stored = try await f.repository.node("n1")
            #expect(stored.info.state == .draining && !stored.info.schedulable)
            #expect(drained.header("X-Orchestrator-Index") == String(stored.revision))

            // Uncordoning a drained node makes it ready again.
            let back = try await client.send(.post, "/api/v1/nodes/n1/uncordon")
            #expect(back.json["state"] as? String == "ready")
            #expect(back.json["schedulable"] as? Bool == true)

            // A down node stays down when drained, but stops taking tasks.
            let down = try await client.send(.post, "/api/v1/nodes/gone/drain")
            #expect(down.json["state"] as? String == "down")
            #expect(down.json["schedulable"] as? Bool == false)

            for action in ["drain", "cordon", "uncordon"] {
                let r = try await client.send(.post, "/api/v1/nodes/nope/\(action)")
                #expect(r.status == .notFound)
                #expect(r.errorCode == "not_found")
            }
        }
    }

    @Test("node writes retry when a heartbeat changes the record in between")
    func retriesOnConflict() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        // A store that rewrites the node (a heartbeat) right before the first node write.
        let racing = RacingStore(base: f.memory, key: Array("/orchestrator/nodes/n1".utf8))
        let repo = ClusterRepository(store: racing)
        let (node, changed) = try await repo.updateNode("n1") { $0.cordon() }
        #expect(changed)
        #expect(!node.info.schedulable)
        #expect(racing.txns.withLock { $0 } == 2, "the first compare-and-swap failed and was retried")
        #expect(try await f.repository.node("n1").info.schedulable == false)
    }
}

import Synchronization

/// Passes everything to `base`, but before the first txn on `key` rewrites that key once (as a
/// concurrent heartbeat would), so the caller's compare-and-swap fails and must retry.
final class RacingStore: DelegatingStore {
    let base: MemoryStore
    let key: [UInt8]
    let interferences = Mutex(0)
    let txns = Mutex(0)

    init(base: MemoryStore, key: [UInt8]) {
        self.base = base
        self.key = key
    }

    func txn(_ r: TxnRequest) async throws -> TxnResponse {
        txns.withLock { $0 += 1 }
        let first = interferences.withLock { n -> Bool in
            guard n == 0 else { return false }
            n += 1
            return true
        }
        if first, r.compares.contains(where: { $0.key == key }), let kv = try await base.get(key) {
            try await base.put(key, kv.value)
        }
        return try await base.txn(r)
    }
}
