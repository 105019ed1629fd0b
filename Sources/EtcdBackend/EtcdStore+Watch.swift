import EtcdProto
import Foundation
import GRPCCore
import Store
import Synchronization

extension EtcdStore {
    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV,
              progressNotify: configuration.watchProgressNotify)
    }

    /// One etcd `Watch` stream per watch: the first message is a `create_request`, the answers are
    /// `WatchResponse`s, the first of them the "created" confirmation carrying the revision the
    /// watch starts after when no start revision was given.
    ///
    /// When the connection breaks or the member stops, the watch resumes on the next endpoint from
    /// the revision after the last one delivered, as clientv3 does, so the consumer sees neither a
    /// gap nor a duplicate.
    func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool,
               progressNotify: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchResponse, any Error>.makeStream()
        let task = Task {
            do {
                try await self.runWatch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV,
                                        progressNotify: progressNotify, continuation: continuation)
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        // Stopping the iteration cancels the task, which cancels the RPC and so closes the watch
        // on etcd's side.
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func runWatch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool, progressNotify: Bool,
                          continuation: AsyncThrowingStream<WatchResponse, any Error>.Continuation) async throws {
        // The first revision not yet delivered; 0 until etcd says where "now" is.
        let cursor = WatchCursor(next: max(fromRevision, 0))
        var index = preferred.withLock { $0 }
        var failures: [String] = []
        var options = CallOptions.defaults
        options.waitForReady = false
        options.maxResponseMessageBytes = configuration.maxResponseBytes
        while true {
            try Task.checkCancellation()
            let connection = connections[index % connections.count]
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = Data(key)
            create.rangeEnd = Data(rangeEnd)
            create.startRevision = cursor.next
            create.progressNotify = progressNotify
            create.prevKv = prevKV
            var request = Etcdserverpb_WatchRequest()
            request.createRequest = create
            cursor.delivered = false
            do {
                // The request side half-closes after the create request; etcd keeps the watch
                // running until the response side ends.
                try await connection.watch.watch(
                    request: StreamingClientRequest(producer: { [request] writer in try await writer.write(request) }),
                    options: options
                ) { response in
                    for try await message in response.messages {
                        if let answer = try Self.handle(message, endpoint: connection.url, cursor: cursor) {
                            continuation.yield(answer)
                        }
                    }
                }
                // etcd closed the stream (member stopping).
                failures.append("\(connection.url): the watch stream ended")
            } catch let error as StoreError {
                throw error
            } catch let error as EtcdStoreError {
                throw error
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                failures.append("\(connection.url): \(error)")
            }
            if cursor.delivered { failures.removeAll() }
            if failures.count >= configuration.watchReconnectAttempts { throw EtcdStoreError.unavailable(attempts: failures) }
            logger.debug("etcd watch interrupted, resuming on the next endpoint",
                         metadata: ["endpoint": "\(connection.url)", "from": "\(cursor.next)"])
            index += 1
            // Back off once every endpoint has failed in a row, so a cluster that is down is not
            // hammered; a single broken endpoint is replaced at once.
            if failures.count >= connections.count {
                try await Task.sleep(for: .milliseconds(min(100 << min(failures.count - connections.count, 4), 1_000)))
            }
        }
    }

    /// Turns one answer of the watch stream into what the consumer sees, if anything, and advances
    /// the cursor past what it covers.
    private static func handle(_ message: Etcdserverpb_WatchResponse, endpoint: String, cursor: WatchCursor) throws -> WatchResponse? {
        let revision = message.header.revision
        cursor.delivered = true
        if message.canceled {
            if message.compactRevision > 0 { throw StoreError.compacted(message.compactRevision) }
            throw EtcdStoreError.watchCanceled(message.cancelReason.isEmpty ? "no reason given" : message.cancelReason)
        }
        if message.created {
            // A watch "from now" starts after the revision etcd was at when it registered it; pin
            // that, so a resumed watch does not skip what happened in between.
            if cursor.next == 0 { cursor.next = revision + 1 }
            return nil
        }
        if message.events.isEmpty {
            // Progress notification: everything up to `revision` has been delivered.
            cursor.next = max(cursor.next, revision + 1)
            return WatchResponse(revision: revision, events: [])
        }
        // After a resume etcd replays from `next`; anything older was delivered before.
        let next = cursor.next
        let events = message.events.lazy.map(WatchEvent.init).filter { $0.kv.modRevision >= next }
        guard let last = events.last else { return nil }
        cursor.next = last.kv.modRevision + 1
        return WatchResponse(revision: revision, events: Array(events))
    }
}

/// Where a watch stands: the first revision not yet delivered, and whether the current stream
/// has delivered anything. Shared between the watch's loop and grpc-swift's response handler,
/// which run one after the other, never at once; the lock only makes that checkable.
final class WatchCursor: Sendable {
    private let state: Mutex<(next: Int64, delivered: Bool)>

    init(next: Int64) {
        state = Mutex((next, false))
    }

    var next: Int64 {
        get { state.withLock { $0.next } }
        set { state.withLock { $0.next = newValue } }
    }

    var delivered: Bool {
        get { state.withLock { $0.delivered } }
        set { state.withLock { $0.delivered = newValue } }
    }
}
