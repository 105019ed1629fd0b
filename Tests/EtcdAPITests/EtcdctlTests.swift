import EtcdAPITestSupport
import Foundation
import Raft
import Store
import Testing

extension EtcdAPITestSuites {
    /// Debian's real etcdctl 3.4 against our 3-replica cluster, through the leader's and a follower's
    /// endpoints: what an operator types must work as it does against etcd.
    @Suite(.serialized, .enabled(if: Etcdctl.shouldRun, "etcdctl is not installed (apt-get install etcd-client)"))
    struct EtcdctlTests {
        @Test("put, get (prefix, --rev), del and an interactive txn, through the leader and a follower")
        func keyValueCommands() async throws {
            try await TestCluster.with { cluster in
                let (leader, follower, _) = try await cluster.leaderAndFollower()
                let viaFollower = try Etcdctl(endpoints: [follower])
                let viaLeader = try Etcdctl(endpoints: [leader])

                #expect(try await viaFollower.ok(["put", "foo", "bar"]) == "OK\n")
                let first = try await cluster.agreedRevision()
                #expect(try await viaLeader.ok(["put", "foo", "bar2"]) == "OK\n")
                #expect(try await viaFollower.ok(["put", "fox", "quick"]) == "OK\n")
                #expect(try await viaLeader.ok(["get", "foo"]) == "foo\nbar2\n")
                #expect(try await viaFollower.ok(["get", "foo", "--rev=\(first)"]) == "foo\nbar\n")
                #expect(try await viaFollower.ok(["get", "fo", "--prefix"]) == "foo\nbar2\nfox\nquick\n")
                #expect(try await viaLeader.ok(["get", "fo", "--prefix", "--keys-only"]) == "foo\n\nfox\n\n")
                #expect(try await viaFollower.ok(["get", "--consistency=s", "fox"]) == "fox\nquick\n")
                // The follower forwarded its writes: every replica holds them.
                _ = try await cluster.agreedRevision()
                for member in cluster.members {
                    #expect(member.store.machine.store.get(b("fox"))?.value == b("quick"))
                }

                #expect(try await viaFollower.ok(["del", "fox"]) == "1\n")
                #expect(try await viaLeader.ok(["get", "fox"]) == "")

                // etcdctl's interactive txn: compares, blank line, success ops, blank line, failure ops.
                let txn = "value(\"foo\") = \"bar2\"\n\nput txn-result ok\n\nput txn-result no\n\n"
                let succeeded = try await viaFollower.ok(["txn", "-i"], stdin: txn)
                #expect(succeeded.contains("SUCCESS\n\nOK"), "\(succeeded)")
                let failed = try await viaLeader.ok(["txn", "-i"], stdin: txn.replacingOccurrences(of: "bar2", with: "nope"))
                #expect(failed.contains("FAILURE\n\nOK"), "\(failed)")
                #expect(try await viaLeader.ok(["get", "txn-result"]) == "txn-result\nno\n")
            }
        }

        @Test("watch from a revision in the background: history, then live events, with prev_kv")
        func watchFromRevision() async throws {
            try await TestCluster.with { cluster in
                let (_, follower, _) = try await cluster.leaderAndFollower()
                let etcdctl = try Etcdctl(endpoints: [follower])
                try await etcdctl.ok(["put", "w/a", "1"])
                let start = try await cluster.agreedRevision()
                try await etcdctl.ok(["put", "w/a", "2"])
                try await etcdctl.ok(["put", "other", "x"])
                let watch = try etcdctl.launch(["watch", "--prefix", "w/", "--rev=\(start)", "--prev-kv"])
                do {
                    try await watch.waitForOutput("the history") { $0.contains("w/a\n1\nw/a\n2\n") }
                    try await etcdctl.ok(["del", "w/a"])
                    try await etcdctl.ok(["put", "w/b", "3"])
                    let expected = "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n2\nDELETE\nw/a\n2\nw/a\n\nPUT\nw/b\n3\n"
                    try await watch.waitForOutput("the live events") { $0 == expected }
                    await watch.stop()
                    #expect(watch.output() == expected)
                } catch {
                    await watch.stop()
                    throw error
                }
            }
        }

        @Test("lease grant, put --lease, timetolive --keys, keep-alive --once, list, revoke")
        func leases() async throws {
            try await TestCluster.with { cluster in
                let (leader, follower, _) = try await cluster.leaderAndFollower()
                let etcdctl = try Etcdctl(endpoints: [follower, leader])
                let granted = try await etcdctl.ok(["lease", "grant", "60"])
                let match = try #require(granted.firstMatch(of: /lease ([0-9a-f]+) granted with TTL\(60s\)/), "\(granted)")
                let id = String(match.1)
                #expect(try await etcdctl.ok(["put", "--lease=\(id)", "leased", "v"]) == "OK\n")
                let ttl = try await etcdctl.ok(["lease", "timetolive", id, "--keys"])
                #expect(ttl.contains("lease \(id) granted with TTL(60s), remaining(") && ttl.contains("attached keys([leased])"), "\(ttl)")
                #expect(try await etcdctl.ok(["lease", "keep-alive", "--once", id]) == "lease \(id) keepalived with TTL(60)\n")
                #expect(try await etcdctl.ok(["lease", "list"]) == "found 1 leases\n\(id)\n")
                #expect(try await etcdctl.ok(["lease", "revoke", id]).contains("revoked"))
                #expect(try await etcdctl.ok(["get", "leased"]) == "")
                #expect(try await etcdctl.ok(["lease", "timetolive", id]) == "lease \(id) already expired\n")
            }
        }

        @Test("member list, endpoint status and endpoint health over every member")
        func clusterCommands() async throws {
            try await TestCluster.with { cluster in
                let leader = try await cluster.waitForLeader()
                let etcdctl = try Etcdctl(endpoints: cluster.endpoints)
                let members = try await etcdctl.ok(["member", "list"])
                for member in cluster.members {
                    #expect(members.contains("\(String(member.id, radix: 16)), started, m\(member.id), http://127.0.0.1:"), "\(members)")
                    #expect(members.contains("http://\(member.endpoint), false"), "\(members)")
                }
                let status = try await etcdctl.ok(["endpoint", "status"])
                let lines = status.split(separator: "\n")
                #expect(lines.count == 3, "\(status)")
                for member in cluster.members {
                    let line = try #require(lines.first { $0.hasPrefix(member.endpoint + ",") }, "\(status)")
                    #expect(line.contains(", \(String(member.id, radix: 16)), 3.4.0-compatible, "), "\(line)")
                    #expect(line.contains(member.id == leader ? ", true, false, " : ", false, false, "), "\(line)")
                }
                #expect(try await etcdctl.ok(["alarm", "list"]) == "")
                #expect(try await etcdctl.ok(["defrag"]).contains("Finished defragmenting etcd member[\(cluster.endpoints[0])]"))
                let health = try await etcdctl.run(["endpoint", "health"])
                #expect(health.succeeded, "\(health.stderr)")
                for member in cluster.members {
                    #expect((health.stdout + health.stderr).contains("\(member.endpoint) is healthy: successfully committed proposal"), "\(health)")
                }
            }
        }

        @Test("the quota: past --quota-backend-bytes a put is refused with etcd's NOSPACE error and alarm; alarm list and endpoint status show it; reads, deletes and same-size puts go on; after a compaction, alarm disarm lets writes in again")
        func quotaAndAlarm() async throws {
            var options = RaftStore.Options()
            options.quotaBytes = 64 << 10
            try await TestCluster.with(storeOptions: options) { cluster in
                let (leader, follower, _) = try await cluster.leaderAndFollower()
                let etcdctl = try Etcdctl(endpoints: [follower])
                let value = String(repeating: "v", count: 4096)
                var refused: Etcdctl.Output?
                var written = 0
                for i in 0..<40 {
                    let out = try await etcdctl.run(["put", "quota/k\(i)", value])
                    if !out.succeeded { refused = out; break }
                    written += 1
                }
                let refusal = try #require(refused, "64 KiB of quota took 40 puts of 4 KiB")
                #expect(refusal.stderr.contains("etcdserver: mvcc: database space exceeded"), "\(refusal)")
                #expect(written >= 10 && written < 16, "\(written) puts of 4 KiB fit in 64 KiB")
                let alarms = try await etcdctl.ok(["alarm", "list"])
                #expect(alarms.contains("alarm:NOSPACE"), "\(alarms)")
                #expect(try await Etcdctl(endpoints: [leader]).ok(["endpoint", "status"]).contains("alarm:NOSPACE"))
                // Every replica holds the alarm and refuses what grows the store.
                _ = try await cluster.agreedRevision()
                for member in cluster.members { #expect(member.store.machine.store.isOverQuota) }
                #expect(try await etcdctl.run(["put", "quota/new", "x"]).stderr.contains("database space exceeded"))
                #expect(try await etcdctl.run(["put", "quota/k0", value + "more"]).stderr.contains("database space exceeded"))
                #expect(try await etcdctl.run(["lease", "grant", "60"]).stderr.contains("database space exceeded"))
                // Reads, a put no larger than the value it replaces, and deletes go on.
                #expect(try await etcdctl.ok(["get", "quota/k1", "--print-value-only"]) == value + "\n")
                #expect(try await etcdctl.ok(["put", "quota/k1", String(repeating: "w", count: 4096)]) == "OK\n")
                #expect(try await etcdctl.ok(["del", "quota/", "--prefix"]) == "\(written)\n")
                // Still refused until disarmed; the deleted versions leave with a compaction.
                #expect(try await etcdctl.run(["put", "quota/after", "x"]).stderr.contains("database space exceeded"))
                let revision = try await cluster.agreedRevision()
                _ = try await etcdctl.ok(["compaction", "\(revision)"])
                let disarmed = try await etcdctl.ok(["alarm", "disarm"])
                #expect(disarmed.contains("alarm:NOSPACE"), "\(disarmed)")
                #expect(try await etcdctl.ok(["alarm", "list"]) == "")
                #expect(try await etcdctl.ok(["put", "quota/after", "x"]) == "OK\n")
            }
        }
    }
}
