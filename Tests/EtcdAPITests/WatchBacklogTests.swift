import EtcdAPITestSupport
import Foundation
import GRPCCore
import Logging
import Store
import Synchronization
import Testing
@testable import EtcdAPI
import EtcdProto

/// The Watch service with a client that reads slower than the cluster changes. The transport makes
/// the session's writer wait for such a client (`DirectHTTP2ServerTransportTests`'
/// `slowReaderBackpressure`); here the writer itself waits, so the session's part is seen alone.
@Suite struct WatchBacklogTests {
    /// A session over a MemoryStore with a 64 KiB backlog, a client that reads nothing yet, and a
    /// watch on big/ that has fallen behind 40 puts of 16 KiB (ten times the backlog) and let go
    /// of its store watch.
    struct Behind {
        let store = MemoryStore()
        let client = SlowClient()
        let input: AsyncThrowingStream<Etcdserverpb_WatchRequest, any Error>.Continuation
        let session: Task<Void, any Error>

        init() async throws {
            var configuration = EtcdAPIServer.Configuration()
            configuration.watchBacklogBytes = 64 * 1024
            let core = ServerCore(store: store, info: StaticClusterInfo(endpoint: "127.0.0.1:1"), logger: Logger(label: "test"),
                                  configuration: configuration)
            let (requests, input) = AsyncThrowingStream<Etcdserverpb_WatchRequest, any Error>.makeStream()
            self.input = input
            let client = self.client
            session = Task {
                try await WatchSession(core: core).run(requests: RPCAsyncSequence(wrapping: requests), writer: RPCWriter(wrapping: client))
            }
            var create = Etcdserverpb_WatchRequest()
            create.createRequest.key = Data("big/".utf8)
            create.createRequest.rangeEnd = Data("big0".utf8)
            input.yield(create)
            let store = self.store
            try await poll("the store watch to open") { store.openWatches == 1 }
            let value = [UInt8](repeating: 7, count: 16 * 1024)
            for i in 0..<40 { try await store.put(Array("big/\(i)".utf8), value) }
            try await poll("the session to let go of the slow client's store watch") { store.openWatches == 0 }
        }

        func end() async throws {
            client.startReading()
            input.finish()
            try await session.value
        }
    }

    @Test("past its backlog a slow client's watch lets go of the store, then catches up from history: every event once, in order, then live")
    func slowClientCatchesUp() async throws {
        let behind = try await Behind()
        let (store, client) = (behind.store, behind.client)
        client.startReading()
        try await poll("all 40 events") { client.eventKeys.count >= 40 }
        #expect(client.eventKeys == (0..<40).map { "big/\($0)" })
        try await poll("the watch to be live again") { store.openWatches == 1 }
        try await store.put(Array("big/last".utf8), [1])
        try await poll("a live event after the catch-up") { client.eventKeys.last == "big/last" }
        #expect(client.eventKeys.count == 41)
        try await behind.end()
    }

    @Test("history compacted while a slow client is behind: its watch is canceled with compact_revision, as etcd does")
    func compactedWhileBehind() async throws {
        let behind = try await Behind()
        let (store, client) = (behind.store, behind.client)
        let latest = try await store.put(Array("other".utf8), [1]).revision
        try await store.compact(revision: latest)
        client.startReading()
        try await poll("the cancel") { client.responses.contains(where: \.canceled) }
        let canceled = try #require(client.responses.last)
        #expect(canceled.canceled && canceled.compactRevision == latest, "\(canceled)")
        // What arrived before the cancel is the start of the history, in order, without gaps.
        #expect(client.eventKeys == (0..<client.eventKeys.count).map { "big/\($0)" })
        #expect(client.eventKeys.count < 40)
        #expect(store.openWatches == 0)
        try await behind.end()
    }
}

/// A writer that takes nothing until `startReading`, then records every answer.
final class SlowClient: RPCWriterProtocol, Sendable {
    private let reading = AsyncStream<Never>.makeStream()
    private let received = Mutex<[Etcdserverpb_WatchResponse]>([])

    func startReading() { reading.continuation.finish() }

    func write(_ element: Etcdserverpb_WatchResponse) async throws {
        for await _ in reading.stream {}
        received.withLock { $0.append(element) }
    }

    func write(contentsOf elements: some Sequence<Etcdserverpb_WatchResponse>) async throws {
        for element in elements { try await write(element) }
    }

    var responses: [Etcdserverpb_WatchResponse] { received.withLock { $0 } }

    var eventKeys: [String] {
        received.withLock { $0.flatMap { $0.events.map { String(decoding: $0.kv.key, as: UTF8.self) } } }
    }
}

/// Polls `condition` every few milliseconds; throws after `timeout`.
private func poll(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw LocalClusterError("\(what) did not happen within \(timeout)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}
