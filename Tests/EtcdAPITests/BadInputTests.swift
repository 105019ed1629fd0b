import EtcdAPI
import EtcdProto
import EtcdAPITestSupport
import Foundation
import GRPCCore
import Raft
import Store
import Testing

extension EtcdAPITestSuites {
    /// Requests the API must refuse: etcd's gRPC code and message, and nothing changes in the store.
    @Suite(.serialized)
    struct BadInputTests {
        /// One bad request through a Swift gRPC client: the expected code and message.
        struct Case: Sendable, CustomStringConvertible {
            var description: String
            var code: RPCError.Code
            var message: String
            var call: @Sendable (EtcdGRPCConnection) async throws -> Void
        }

        static func cases(compacted: Int64, future: Int64) -> [Case] {
            func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) -> @Sendable (EtcdGRPCConnection) async throws -> Void {
                { c in
                    var r = Etcdserverpb_PutRequest()
                    r.key = Data(key.utf8)
                    r.value = Data(value)
                    r.lease = lease
                    _ = try await c.kv.put(r)
                }
            }
            func range(_ key: String, end: String = "", revision: Int64 = 0) -> @Sendable (EtcdGRPCConnection) async throws -> Void {
                { c in
                    var r = Etcdserverpb_RangeRequest()
                    r.key = Data(key.utf8)
                    r.rangeEnd = Data(end.utf8)
                    r.revision = revision
                    _ = try await c.kv.range(r)
                }
            }
            return [
                Case(description: "empty key", code: .invalidArgument, message: "etcdserver: key is not provided", call: put("", b("v"))),
                Case(description: "value over 1.5 MiB", code: .invalidArgument, message: "etcdserver: request is too large",
                     call: put("big", [UInt8](repeating: 1, count: maxRequestBytes + 1))),
                Case(description: "range end before key", code: .invalidArgument,
                     message: EtcdAPIError.store(.invalidRange).description, call: range("b", end: "a")),
                Case(description: "delete with range end before key", code: .invalidArgument,
                     message: EtcdAPIError.store(.invalidRange).description, call: { c in
                         var r = Etcdserverpb_DeleteRangeRequest()
                         r.key = Data("b".utf8)
                         r.rangeEnd = Data("a".utf8)
                         _ = try await c.kv.deleteRange(r)
                     }),
                Case(description: "unknown lease", code: .notFound, message: "etcdserver: requested lease not found",
                     call: put("k", b("v"), lease: 0x1234)),
                Case(description: "revoking an unknown lease", code: .notFound, message: "etcdserver: requested lease not found",
                     call: { c in
                         var r = Etcdserverpb_LeaseRevokeRequest()
                         r.id = 0x4321
                         _ = try await c.lease.leaseRevoke(r)
                     }),
                Case(description: "compacted revision", code: .outOfRange,
                     message: "etcdserver: mvcc: required revision has been compacted", call: range("k", revision: compacted - 1)),
                Case(description: "future revision", code: .outOfRange,
                     message: "etcdserver: mvcc: required revision is a future revision", call: range("k", revision: future)),
                Case(description: "compacting an already compacted revision", code: .outOfRange,
                     message: "etcdserver: mvcc: required revision has been compacted", call: { c in
                         var r = Etcdserverpb_CompactionRequest()
                         r.revision = compacted - 1
                         _ = try await c.kv.compact(r)
                     }),
                Case(description: "txn writing one key twice", code: .invalidArgument,
                     message: "etcdserver: duplicate key given in txn request", call: { c in
                         var p = Etcdserverpb_RequestOp()
                         p.requestPut.key = Data("dup".utf8)
                         var r = Etcdserverpb_TxnRequest()
                         r.success = [p, p]
                         _ = try await c.kv.txn(r)
                     }),
                Case(description: "ignore_value on a missing key", code: .invalidArgument, message: "etcdserver: key not found",
                     call: { c in
                         var r = Etcdserverpb_PutRequest()
                         r.key = Data("missing".utf8)
                         r.ignoreValue = true
                         _ = try await c.kv.put(r)
                     }),
            ]
        }

        @Test("each bad request gets etcd's code and message; no replica's store changes")
        func refusedThroughSwiftClient() async throws {
            try await TestCluster.with { cluster in
                let (leader, follower, _) = try await cluster.leaderAndFollower()
                let store = cluster.members[0].store
                for i in 0..<5 { try await store.put(b("k"), b("v\(i)")) }
                let compacted = try await cluster.agreedRevision()
                try await store.compact(revision: compacted)
                for endpoint in [leader, follower] {
                    try await withConnection(endpoint) { connection in
                    for c in Self.cases(compacted: compacted, future: compacted + 1_000) {
                        let before = try await cluster.agreedRevision()
                        let states = try await cluster.agreedState()
                        let error = await #expect(throws: RPCError.self, "\(c) via \(endpoint)") { try await c.call(connection) }
                        #expect(error?.code == c.code, "\(c): \(String(describing: error))")
                        #expect(error?.message == c.message, "\(c): \(String(describing: error))")
                        #expect(try await cluster.agreedRevision() == before, "\(c) changed the revision")
                        #expect(cluster.members.map { $0.store.machine.store } == states, "\(c) changed a store")
                    }
                    }
                }
            }
        }

        @Test("etcdctl prints etcd's messages for bad input", .enabled(if: Etcdctl.shouldRun))
        func refusedThroughEtcdctl() async throws {
            try await TestCluster.with { cluster in
                let (_, follower, _) = try await cluster.leaderAndFollower()
                let etcdctl = try Etcdctl(endpoints: [follower])
                try await etcdctl.ok(["put", "k", "v1"])
                try await etcdctl.ok(["put", "k", "v2"])
                let revision = try await cluster.agreedRevision()
                try await etcdctl.ok(["compact", "\(revision)"])
                let big = String(repeating: "x", count: maxRequestBytes + 10)
                let cases: [([String], String?, String)] = [
                    (["put", "", "v"], nil, "Error: etcdserver: key is not provided"),
                    (["put", "big"], big, "Error: etcdserver: request is too large"),
                    // etcdctl shortens only the errors it knows; ours is printed with its gRPC code.
                    (["get", "b", "a"], nil, "code = InvalidArgument desc = etcdserver: range end sorts before the key"),
                    (["put", "k", "v", "--lease=1234"], nil, "Error: etcdserver: requested lease not found"),
                    (["get", "k", "--rev=\(revision - 1)"], nil, "Error: etcdserver: mvcc: required revision has been compacted"),
                    (["get", "k", "--rev=\(revision + 100)"], nil, "Error: etcdserver: mvcc: required revision is a future revision"),
                ]
                for (arguments, stdin, message) in cases {
                    let before = try await cluster.agreedRevision()
                    let out = try await etcdctl.run(arguments, stdin: stdin)
                    #expect(!out.succeeded, "\(arguments) succeeded")
                    #expect(out.stderr.contains(message), "\(arguments): \(out.stderr)")
                    #expect(try await cluster.agreedRevision() == before)
                }
                // A watch from the compacted history is canceled with etcd's compacted error.
                let watch = try await etcdctl.run(["watch", "k", "--rev=\(revision - 1)"], timeout: .seconds(20))
                #expect((watch.stdout + watch.stderr).contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
                        "\(watch)")
            }
        }

        @Test("errors map to etcd's codes and carry the typed error as their cause")
        func errorMapping() {
            let error = EtcdAPIError(StoreError.leaseNotFound(7)).rpcError
            #expect(error.code == .notFound)
            #expect(error.message == "etcdserver: requested lease not found")
            #expect(error.cause as? EtcdAPIError == .store(.leaseNotFound(7)))
            #expect(EtcdAPIError(StoreError.compacted(3)).code == .outOfRange)
            #expect(EtcdAPIError(RaftNodeError.notLeader(leader: 0)).rpcError.code == .unavailable)
        }
    }
}
