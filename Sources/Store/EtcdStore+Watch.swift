import AsyncHTTPClient
import Logging
import NIOCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension EtcdStore {
    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV,
              progressNotify: configuration.watchProgressNotify)
    }

    /// `/v3/watch` is etcd's bidirectional Watch stream through the gateway: the POST body is one
    /// `WatchRequest` (a `create_request`), the answer a never-ending body of newline-separated
    /// `{"result": WatchResponse}` objects. The first is the "created" confirmation, carrying the
    /// revision the watch starts after when no start revision was given.
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
        // Stopping the iteration cancels the task, which cancels the HTTP request and so closes
        // the watch on etcd's side.
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func runWatch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool, progressNotify: Bool,
                          continuation: AsyncThrowingStream<WatchResponse, any Error>.Continuation) async throws {
        // The first revision not yet delivered; 0 until etcd says where "now" is.
        var next = max(fromRevision, 0)
        var index = preferred.withLock { $0 }
        var failures: [String] = []
        while true {
            try Task.checkCancellation()
            let endpoint = endpoints[index % endpoints.count]
            var delivered = false
            do {
                let create = EtcdWatchCreateRequestJSON(create_request: .init(
                    key: EtcdBytes(key), range_end: rangeEnd.nonEmpty, start_revision: next.nonZero,
                    progress_notify: progressNotify.trueOrNil, prev_kv: prevKV.trueOrNil))
                var request = HTTPClientRequest(url: endpoint + "/v3/watch")
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: Array(try JSONEncoder().encode(create))))
                // The deadline covers only the response head: AsyncHTTPClient stops it once the head
                // arrives, and the body then streams for as long as the watch lives.
                let response = try await client.execute(request, timeout: configuration.requestTimeout.timeAmount, logger: logger)
                guard response.status == .ok else {
                    let body = try await response.body.collect(upTo: 1 << 20)
                    let message = (try? JSONDecoder().decode(EtcdErrorJSON.self, from: Data(body.readableBytesView)))?.message
                        ?? String(buffer: body)
                    if response.status.code < 500 {
                        if let error = ErrorContext(revision: next).storeError(for: message) { throw await completed(error) }
                        throw EtcdStoreError.server(httpStatus: Int(response.status.code), grpcCode: nil, message: message)
                    }
                    throw EtcdStoreError.unavailable(attempts: ["\(endpoint): HTTP \(response.status.code): \(message)"])
                }
                var pending: [UInt8] = []
                for try await chunk in response.body {
                    pending.append(contentsOf: chunk.readableBytesView)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = Array(pending[..<newline])
                        pending.removeSubrange(...newline)
                        guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") }) else { continue }
                        if let response = try handle(line: line, endpoint: endpoint, next: &next) {
                            continuation.yield(response)
                        }
                        delivered = true
                    }
                }
                // etcd closed the stream (member stopping, or the gateway's connection to it broke).
                failures.append("\(endpoint): the watch stream ended")
            } catch let error as StoreError {
                throw error
            } catch let error as EtcdStoreError {
                if case .unavailable(let attempts) = error { failures += attempts } else { throw error }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                failures.append("\(endpoint): \(error)")
            }
            if delivered { failures.removeAll() }
            if failures.count >= configuration.watchReconnectAttempts { throw EtcdStoreError.unavailable(attempts: failures) }
            logger.debug("etcd watch interrupted, resuming on the next endpoint",
                         metadata: ["endpoint": "\(endpoint)", "from": "\(next)"])
            index += 1
            // Back off once every endpoint has failed in a row, so a cluster that is down is not
            // hammered; a single broken endpoint is replaced at once.
            if failures.count >= endpoints.count {
                try await Task.sleep(for: .milliseconds(min(100 << min(failures.count - endpoints.count, 4), 1_000)))
            }
        }
    }

    /// Turns one line of the watch stream into what the consumer sees, if anything, and advances
    /// `next` past what it covers.
    private func handle(line: [UInt8], endpoint: String, next: inout Int64) throws -> WatchResponse? {
        let message: EtcdStreamMessageJSON<EtcdWatchResponseJSON>
        do {
            message = try JSONDecoder().decode(EtcdStreamMessageJSON<EtcdWatchResponseJSON>.self, from: Data(line))
        } catch {
            throw EtcdStoreError.badResponse("watch: \(error): \(String(decoding: line.prefix(500), as: UTF8.self))")
        }
        if let error = message.error {
            // An error inside the stream is the gateway's connection to etcd failing: resume elsewhere.
            throw EtcdStoreError.unavailable(attempts: ["\(endpoint): \(error.message ?? "watch stream error")"])
        }
        guard let result = message.result else { return nil }
        let revision = result.header?.revision?.value ?? 0
        if result.canceled == true {
            if let compacted = result.compact_revision?.value, compacted > 0 { throw StoreError.compacted(compacted) }
            throw EtcdStoreError.watchCanceled(result.cancel_reason ?? "no reason given")
        }
        if result.created == true {
            // A watch "from now" starts after the revision etcd was at when it registered it; pin
            // that, so a resumed watch does not skip what happened in between.
            if next == 0 { next = revision + 1 }
            return nil
        }
        let raw = (result.events ?? []).map(\.model)
        if raw.isEmpty {
            // Progress notification: everything up to `revision` has been delivered.
            next = max(next, revision + 1)
            return WatchResponse(revision: revision, events: [])
        }
        // After a resume etcd replays from `next`; anything older was delivered before.
        let events = raw.filter { $0.kv.modRevision >= next }
        guard let last = events.last else { return nil }
        next = last.kv.modRevision + 1
        return WatchResponse(revision: revision, events: events)
    }
}
