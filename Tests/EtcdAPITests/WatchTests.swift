import EtcdAPI
import EtcdProto
import EtcdAPITestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Store
import Synchronization
import Testing

/// A watch stream driven from a test: requests are pushed in, answers collected for polling.
final class WatchDriver: Sendable {
    private let input: AsyncStream<Etcdserverpb_WatchRequest>.Continuation
    private let received = Locked<[Etcdserverpb_WatchResponse]>([])
    private let call: Task<Void, any Error>

    init(_ connection: EtcdGRPCConnection) {
        let (requests, input) = AsyncStream<Etcdserverpb_WatchRequest>.makeStream()
        self.input = input
        let received = self.received
        call = Task {
            try await connection.watch.watch(requestProducer: { writer in
                for await request in requests { try await writer.write(request) }
            }, onResponse: { response in
                for try await message in response.messages { received.withLock { $0.append(message) } }
            })
        }
    }

    func create(_ key: String, rangeEnd: String = "", start: Int64 = 0, prevKV: Bool = false,
                progressNotify: Bool = false, filters: [Etcdserverpb_WatchCreateRequest.FilterType] = []) {
        var r = Etcdserverpb_WatchRequest()
        r.createRequest.key = Data(key.utf8)
        r.createRequest.rangeEnd = Data(rangeEnd.utf8)
        r.createRequest.startRevision = start
        r.createRequest.prevKv = prevKV
        r.createRequest.progressNotify = progressNotify
        r.createRequest.filters = filters
        input.yield(r)
    }

    func cancel(_ id: Int64) {
        var r = Etcdserverpb_WatchRequest()
        r.cancelRequest.watchID = id
        input.yield(r)
    }

    func requestProgress() {
        var r = Etcdserverpb_WatchRequest()
        r.progressRequest = Etcdserverpb_WatchProgressRequest()
        input.yield(r)
    }

    var responses: [Etcdserverpb_WatchResponse] { received.withLock { $0 } }

    /// Polls until the answers satisfy `condition`; fails after `timeout`.
    func wait(_ what: String, timeout: Duration = .seconds(30), _ condition: ([Etcdserverpb_WatchResponse]) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(responses) {
            guard ContinuousClock.now < deadline else {
                throw LocalClusterError("watch never showed \(what) within \(timeout); got \(responses)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Ends the stream from the client side and waits for the call to finish.
    func close() async {
        input.finish()
        _ = await call.result
    }
}

extension EtcdAPITestSuites {
    /// The Watch service through a Swift gRPC client, for what etcdctl cannot show: ids, created and
    /// canceled answers, compaction, progress notifications, filters.
    @Suite(.serialized)
    struct WatchTests {
        static func keys(_ r: Etcdserverpb_WatchResponse) -> [String] {
            r.events.map { ($0.type == .put ? "put " : "del ") + String(decoding: $0.kv.key, as: UTF8.self) }
        }

        @Test("created answers in order, history from a revision with prev_kv, live events, filters, cancel")
        func createEventsCancel() async throws {
            try await TestCluster.with { cluster in
                let (_, follower, _) = try await cluster.leaderAndFollower()
                let store = cluster.members[0].store
                let start = try await store.put(b("a/1"), b("x")).revision
                try await store.put(b("a/1"), b("y"))
                try await withConnection(follower) { connection in
                    let watch = WatchDriver(connection)
                    watch.create("a/", rangeEnd: "a0", start: start, prevKV: true)
                    watch.create("a/", rangeEnd: "a0", filters: [.noput])
                    try await watch.wait("two created answers") { $0.filter(\.created).count == 2 }
                    #expect(watch.responses.filter(\.created).map(\.watchID) == [0, 1])
                    try await watch.wait("the history") { $0.contains { $0.watchID == 0 && Self.keys($0) == ["put a/1", "put a/1"] } }
                    let history = watch.responses.first { $0.watchID == 0 && !$0.events.isEmpty }!
                    #expect(history.events[1].prevKv.value == Data("x".utf8))
                    try await store.delete(b("a/1"))
                    try await store.put(b("a/2"), b("z"))
                    try await watch.wait("the delete on both watches") { responses in
                        responses.contains { $0.watchID == 1 && Self.keys($0) == ["del a/1"] }
                            && responses.contains { $0.watchID == 0 && Self.keys($0) == ["put a/2"] }
                    }
                    // The no-put watch never saw a put.
                    #expect(!watch.responses.contains { $0.watchID == 1 && $0.events.contains { $0.type == .put } })
                    watch.cancel(0)
                    try await watch.wait("the cancel answer") { $0.contains { $0.watchID == 0 && $0.canceled } }
                    let afterCancel = watch.responses.count
                    try await store.put(b("a/3"), b("w"))
                    try await store.delete(b("a/3"))
                    try await watch.wait("the delete on the remaining watch") { responses in
                        responses.contains { $0.watchID == 1 && Self.keys($0) == ["del a/3"] }
                    }
                    #expect(!watch.responses.dropFirst(afterCancel).contains { $0.watchID == 0 })
                    await watch.close()
                }
            }
        }

        @Test("a watch below the compacted revision is created, then canceled with compact_revision")
        func compactedStart() async throws {
            try await TestCluster.with { cluster in
                let (leader, _, _) = try await cluster.leaderAndFollower()
                let store = cluster.members[1].store
                for i in 0..<4 { try await store.put(b("c"), b("\(i)")) }
                let compacted = try await store.put(b("c"), b("last")).revision
                try await store.compact(revision: compacted)
                try await withConnection(leader) { connection in
                    let watch = WatchDriver(connection)
                    watch.create("c", start: compacted - 2)
                    try await watch.wait("the cancel") { $0.contains(where: \.canceled) }
                    let responses = watch.responses
                    #expect(responses.first?.created == true)
                    #expect(responses.last?.canceled == true && responses.last?.compactRevision == compacted, "\(responses)")
                    await watch.close()
                }
            }
        }

        @Test("progress_notify and progress requests report the revision everything was delivered up to")
        func progress() async throws {
            try await TestCluster.with(configuration: TestCluster.configuration(progressNotifyInterval: .milliseconds(300))) { cluster in
                let (_, follower, _) = try await cluster.leaderAndFollower()
                let store = cluster.members[0].store
                try await withConnection(follower) { connection in
                    let watch = WatchDriver(connection)
                    watch.create("p", progressNotify: true)
                    watch.create("q")
                    try await watch.wait("created") { $0.filter(\.created).count == 2 }
                    let revision = try await store.put(b("unrelated"), b("1")).revision
                    // The notifying watch gets a progress notification at (at least) that revision.
                    try await watch.wait("a periodic notification") { responses in
                        responses.contains { $0.watchID == 0 && !$0.created && $0.events.isEmpty && $0.header.revision >= revision }
                    }
                    // The other watch only reports progress when asked.
                    #expect(!watch.responses.contains { $0.watchID == 1 && !$0.created })
                    watch.requestProgress()
                    try await watch.wait("the requested notification") { responses in
                        responses.contains { $0.watchID == 1 && !$0.created && $0.events.isEmpty && $0.header.revision >= revision }
                    }
                    await watch.close()
                }
            }
        }
    }
}
