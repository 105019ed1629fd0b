import Foundation
import Synchronization
import Testing

/// Membership at runtime with real processes: the README's "replace a failed master" procedure,
/// under a client that keeps writing, and the refusal of a wiped master restarted with the
/// cluster's initial --peers.
@Suite(.serialized) struct MembershipIntegrationTests {
    /// Task ids the cluster acknowledged (201), and how many writes failed.
    final class Writes: Sendable {
        let acknowledged = Mutex<[String]>([])
        let failed = Atomic<Int>(0)
    }

    static func members(_ cluster: ClusterHarness, master: Int) async throws -> [[String: Any]] {
        let r = try await cluster.request(.GET, master: master, "/api/v1/cluster/members")
        guard r.status == 200, let obj = r.json as? [String: Any], let members = obj["members"] as? [[String: Any]] else {
            throw ClusterHarness.HarnessError.http(r.status, r.body)
        }
        return members
    }

    static func memberID(_ cluster: ClusterHarness, named name: String, master: Int) async throws -> Int? {
        try await members(cluster, master: master).first { $0["name"] as? String == name }?["id"] as? Int
    }

    /// A counter of `master`'s `/metrics` (0 when absent).
    static func metric(_ cluster: ClusterHarness, master: Int, _ name: String) async throws -> Double {
        let r = try await cluster.request(.GET, master: master, "/metrics")
        guard r.status == 200 else { throw ClusterHarness.HarnessError.http(r.status, r.body) }
        let line = r.body.split(separator: "\n").first { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
        return line.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } ?? 0
    }

    @Test("replace a failed master: kill it, wipe it, remove it, add a new one at another address with --join; it catches up through a snapshot (the log is compacted every 20 entries) and is promoted while a client keeps writing, and every acknowledged write is there",
          .timeLimit(.minutes(5)))
    func replaceFailedMaster() async throws {
        // With TLS (the production setting): the new master's Raft stream, snapshot chunks
        // included, is authenticated by its certificate. A low --snapshot-threshold compacts the
        // log long before m4 joins, so it can only catch up from a snapshot.
        let snapshotEvery = ["--snapshot-threshold", "20"]
        let cluster = try ClusterHarness(masters: 3, masterArgs: snapshotEvery, spareMasters: 1)
        try cluster.start()
        defer { cluster.killAll() }
        try await cluster.waitUntil("every master ready", timeout: .seconds(60)) {
            for i in 0..<3 where try await cluster.request(.GET, master: i, "/readyz").status != 200 { return false }
            return true
        }
        let writes = Writes()
        // The client writes through m1 and m2 (m3 is the one that fails), one write at a time.
        let writer = Task {
            var n = 0
            while !Task.isCancelled {
                n += 1
                let body = #"{"name":"w\#(n)","image":"alpine","command":["true"],"resources":{"cpu":1,"memory":1}}"#
                if let r = try? await cluster.request(.POST, master: n % 2, "/api/v1/tasks", body: body), r.status == 201,
                   let id = (r.json as? [String: Any])?["id"] as? String {
                    writes.acknowledged.withLock { $0.append(id) }
                } else {
                    writes.failed.add(1, ordering: .relaxed)
                }
            }
        }
        defer { writer.cancel() }
        try await cluster.waitUntil("some writes acknowledged") { writes.acknowledged.withLock { $0.count } >= 20 }

        // 1. m3 fails and its disk is lost.
        cluster.masters[2].kill9()
        try FileManager.default.removeItem(atPath: "\(cluster.root)/m3")
        // 2. Remove it (through m1; a follower passes the change to the leader).
        guard let oldID = try await Self.memberID(cluster, named: "m3", master: 0) else {
            Issue.record("m3 is not listed")
            return
        }
        try await cluster.waitUntil("m3 removed", timeout: .seconds(30)) {
            try await cluster.request(.DELETE, master: 0, "/api/v1/cluster/members/\(oldID)").status == 204
        }
        #expect(try await Self.memberID(cluster, named: "m3", master: 0) == nil)
        // Removing it again: unknown now.
        #expect(try await cluster.request(.DELETE, master: 1, "/api/v1/cluster/members/\(oldID)").status == 404)
        // 3. A new master, m4, at another address, joins through m2 and is promoted once caught up.
        try cluster.startJoiningMaster(index: 3, via: 1, extraArgs: snapshotEvery)
        try await cluster.waitUntil("m4 a voter", timeout: .seconds(90)) {
            let m4 = try await Self.members(cluster, master: 0).first { $0["name"] as? String == "m4" }
            return m4?["learner"] as? Bool == false
        }
        try await cluster.waitUntil("m4 ready", timeout: .seconds(30)) {
            try await cluster.request(.GET, master: 3, "/readyz").status == 200
        }
        // It caught up through a snapshot: one arrived whole over its Raft stream (the counter
        // is the transport's reassembly; with the default threshold no snapshot exists to send).
        let snapshots = try await Self.metric(cluster, master: 3, "orchestrator_raft_snapshots_received_total")
        #expect(snapshots >= 1, "m4 received no snapshot\n\(cluster.logs.suffix(3000))")
        // Keep writing a little with m4 in the quorum, then stop the client.
        let before = writes.acknowledged.withLock { $0.count }
        try await cluster.waitUntil("writes acknowledged after the promotion") { writes.acknowledged.withLock { $0.count } >= before + 20 }
        writer.cancel()
        _ = await writer.result

        // Every acknowledged write is on the new master: /readyz there is a ReadIndex round, so
        // after it m4 has applied everything committed before it, the writes acknowledged included.
        try await cluster.waitUntil("m4 caught up after the last write", timeout: .seconds(30)) {
            try await cluster.request(.GET, master: 3, "/readyz").status == 200
        }
        let acknowledged = writes.acknowledged.withLock { $0 }
        let onNew = Set(try await cluster.tasks(master: 3).compactMap { $0["id"] as? String })
        let missing = acknowledged.filter { !onNew.contains($0) }
        #expect(missing.isEmpty, "acknowledged writes missing on m4: \(missing.prefix(10))\n\(cluster.logs.suffix(3000))")
        let members = try await Self.members(cluster, master: 3)
        #expect(Set(members.compactMap { $0["name"] as? String }) == ["m1", "m2", "m4"])
        #expect(members.allSatisfy { $0["learner"] as? Bool == false })
        print("replaceFailedMaster: \(acknowledged.count) writes acknowledged, \(writes.failed.load(ordering: .relaxed)) failed (retried)")
    }

    @Test("a master wiped and restarted with the cluster's initial --peers refuses to bootstrap a second cluster, with one clear line",
          .timeLimit(.minutes(3)))
    func wipedMemberRefusesToBootstrap() async throws {
        let cluster = try ClusterHarness(masters: 3, tls: false)
        try cluster.start()
        defer { cluster.killAll() }
        // m3 has run: it registered in the replicated directory (its API address shows).
        try await cluster.waitUntil("m3 registered", timeout: .seconds(60)) {
            let m3 = try await Self.members(cluster, master: 0).first { $0["name"] as? String == "m3" }
            return (m3?["api_address"] as? String ?? "").isEmpty == false
        }
        cluster.masters[2].kill9()
        try FileManager.default.removeItem(atPath: "\(cluster.root)/m3")
        try cluster.masters[2].start()
        try await cluster.waitUntil("m3 to exit", timeout: .seconds(30)) { cluster.masters[2].termination != nil }
        #expect(cluster.masters[2].termination?.status != 0)
        let log = cluster.masters[2].logTail
        #expect(log.contains("refusing to bootstrap a second cluster"), "m3's log:\n\(log)")
        #expect(log.contains("--join"), "the message tells the operator what to do:\n\(log)")
        #expect(!FileManager.default.fileExists(atPath: "\(cluster.root)/m3/raft.sqlite"), "nothing was bootstrapped")
        // The cluster is untouched: still three members, m3 among them (it is the operator's to remove).
        #expect(try await Self.members(cluster, master: 0).count == 3)
    }

    @Test("etcdctl member add|list|promote|remove against the masters: add by peer URL as a learner, promotion refused until it caught up, the master started with --join is promoted, removal stops it",
          .timeLimit(.minutes(4)))
    func etcdctlMembership() async throws {
        let cluster = try ClusterHarness(masters: 3, tls: false, spareMasters: 1)
        try cluster.start()
        defer { cluster.killAll() }
        _ = try await cluster.leaderIndex()
        let endpoint = ["--endpoints", "127.0.0.1:\(cluster.etcdPorts[1])"]
        let etcdctl = ClusterIntegrationTests.etcdctl
        var added: (status: Int32, output: String) = (1, "")
        try await cluster.waitUntil("etcdctl member add", timeout: .seconds(30)) {
            added = try etcdctl(endpoint + ["member", "add", "m4", "--learner", "--peer-urls=http://127.0.0.1:\(cluster.rpcPorts[3])"])
            return added.status == 0
        }
        // "Member 5a1b2c3d4e5f6071 added to cluster ..."
        let words = added.output.split(separator: " ")
        let hexID = try #require(words.firstIndex(of: "Member").map { String(words[$0 + 1]) }, "\(added.output)")
        let list = try etcdctl(endpoint + ["member", "list"])
        #expect(list.status == 0 && list.output.split(separator: "\n").count == 4, "\(list.output)")
        #expect(list.output.contains("\(hexID), unstarted") && list.output.contains("true"), "a learner, not started: \(list.output)")
        // Not caught up (not even started): promotion is refused.
        let early = try etcdctl(endpoint + ["member", "promote", hexID])
        #expect(early.status != 0 && early.output.contains("caught up"), "\(early.output)")
        // The master itself, started with --join, finds itself added and is promoted once caught up.
        let m4 = try cluster.startJoiningMaster(index: 3, via: 0)
        try await cluster.waitUntil("m4 a voter", timeout: .seconds(60)) {
            let out = try etcdctl(endpoint + ["member", "list"]).output
            return out.split(separator: "\n").contains { $0.hasPrefix("\(hexID), started, m4,") && $0.hasSuffix("false") }
        }
        // Removing a member stops it; it is no longer listed.
        let removed = try etcdctl(endpoint + ["member", "remove", hexID])
        #expect(removed.status == 0 && removed.output.contains("removed"), "\(removed.output)")
        try await cluster.waitUntil("m4 to stop", timeout: .seconds(30)) { m4.termination != nil }
        #expect(m4.logTail.contains("was removed from the cluster"), "\(m4.logTail)")
        let after = try etcdctl(endpoint + ["member", "list"])
        #expect(after.output.split(separator: "\n").count == 3 && !after.output.contains(hexID), "\(after.output)")
        // Unknown ids are refused by name.
        let unknown = try etcdctl(endpoint + ["member", "remove", hexID])
        #expect(unknown.status != 0, "\(unknown.output)")
    }
}
