import Hummingbird
import Store
import Synchronization

/// How far a client has read the event stream, from `Last-Event-ID` or `?since=`.
///
/// An SSE id is the store revision of the change: `R` means "everything up to and including
/// revision R has been delivered". One transaction can change several records at one revision (a
/// batch of placements); then all but the last of its events carry `R:i` (the i-th event of that
/// revision, counted from 0), so a client that disconnects in the middle resumes exactly after
/// what it saw, never skipping the rest of the revision.
public struct EventCursor: Sendable, Hashable {
    public var revision: Int64
    /// Within `revision`, the index of the last event delivered; nil: the whole revision.
    public var index: Int?

    public init(revision: Int64, index: Int? = nil) {
        self.revision = revision
        self.index = index
    }

    init(parsing text: String, field: String) throws(APIError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let revision = Int64(parts[0]), revision >= 0 else {
            throw .invalid(field, "must be a revision (an event id such as 42 or 42:1), got \"\(text)\"")
        }
        var index: Int?
        if parts.count == 2 {
            guard let i = Int(parts[1]), i >= 0 else {
                throw .invalid(field, "must be a revision (an event id such as 42 or 42:1), got \"\(text)\"")
            }
            index = i
        }
        self.init(revision: revision, index: index)
    }

    /// The first store revision the watch must replay.
    var watchFrom: Int64 { index == nil ? revision + 1 : revision }

    func delivered(revision r: Int64, index i: Int) -> Bool {
        r < revision || (r == revision && (index.map { i <= $0 } ?? true))
    }
}

/// Turns watch responses into SSE text: translate, number the events of each revision, skip what
/// the cursor says was delivered, apply the type filter, frame. Pure, so the ids are unit-tested.
public struct EventStreamEncoder: Sendable {
    public var filter: Set<ClusterEventType>?
    public var cursor: EventCursor?

    public init(filter: Set<ClusterEventType>? = nil, cursor: EventCursor? = nil) {
        self.filter = filter
        self.cursor = cursor
    }

    /// The SSE messages for one watch response ("" when none passes). Every revision in a response
    /// is complete (the response's revision covers them), so each revision's last message gets the
    /// plain id.
    public mutating func encode(_ response: WatchResponse) -> String {
        var out = ""
        var i = 0
        let changes = response.events
        while i < changes.count {
            let revision = changes[i].kv.modRevision
            var j = i
            while j < changes.count, changes[j].kv.modRevision == revision { j += 1 }
            let events = EventTranslator.translate(Array(changes[i..<j]))
            let kept = events.enumerated().filter { index, event in
                !(cursor?.delivered(revision: revision, index: index) ?? false) && (filter?.contains(event.type) ?? true)
            }
            for (n, (index, event)) in kept.enumerated() {
                let id = n == kept.count - 1 ? "\(revision)" : "\(revision):\(index)"
                out += Self.message(id: id, event: event.type.rawValue, data: APIJSON.encode(ClusterEventView(event: event)))
            }
            i = j
        }
        if let last = changes.last?.kv.modRevision { cursor = EventCursor(revision: last) }
        return out
    }

    /// One SSE message. The JSON is one line (no raw newlines), as a `data:` field must be.
    static func message(id: String?, event: String, data: [UInt8]) -> String {
        (id.map { "id: \($0)\n" } ?? "") + "event: \(event)\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n"
    }

    /// The message that ends a stream on an error (history compacted, store lost).
    static func errorMessage(_ error: APIError) -> String {
        message(id: nil, event: "error", data: error.jsonBody)
    }
}

/// The open event streams, so the master can end them all at shutdown.
final class EventStreamRegistry: Sendable {
    enum Item: Sendable {
        case frames(String)
        case keepalive
        case failed(APIError)
        case shutdown
    }

    private struct State {
        var streams: [UInt64: AsyncStream<Item>.Continuation] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Writes a stream's items as they come: frames (each passed to `written`, which says whether
    /// to go on), keepalive comments, and the `error` or `shutdown` message that ends it.
    static func write(_ items: AsyncStream<Item>, to writer: inout some ResponseBodyWriter, shutdownReason: String,
                      written: (String) -> Bool) async throws {
        for await item in items {
            switch item {
            case .frames(let text):
                try await writer.write(ByteBuffer(string: text))
                if !written(text) { return }
            case .keepalive:
                try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
            case .failed(let error):
                try await writer.write(ByteBuffer(string: EventStreamEncoder.errorMessage(error)))
                return
            case .shutdown:
                try await writer.write(ByteBuffer(string: EventStreamEncoder.message(
                    id: nil, event: "shutdown", data: APIJSON.encode(["reason": shutdownReason]))))
                return
            }
        }
    }

    /// Registers a stream, or returns nil when `limit` are open.
    func register(_ continuation: AsyncStream<Item>.Continuation, limit: Int) -> UInt64? {
        state.withLock { s in
            guard s.streams.count < limit else { return nil }
            defer { s.next += 1 }
            s.streams[s.next] = continuation
            return s.next
        }
    }

    /// Refused streams since the start (`orchestrator_event_streams_refused_total`).
    let refused = Atomic<Int>(0)

    func unregister(_ id: UInt64) {
        _ = state.withLock { $0.streams.removeValue(forKey: id) }
    }

    func closeAll() {
        let all = state.withLock { s in
            defer { s.streams = [:] }
            return Array(s.streams.values)
        }
        for c in all {
            c.yield(.shutdown)
            c.finish()
        }
    }

    var count: Int { state.withLock { $0.streams.count } }
    var refusedCount: Int { refused.load(ordering: .relaxed) }
}

extension OrchestratorAPI {
    /// The longest `timeout_seconds` of an event stream: a day.
    static let maxEventStreamSeconds: Int64 = 86_400

    /// The answer when `maxEventStreams` are open: 503, with `Retry-After` when it is the response.
    static func tooManyEventStreams(_ limit: Int) -> APIError {
        APIError.unavailable("too_many_event_streams",
                             "\(limit) event streams are open on this master, the most it serves; retry later or use another master")
    }

    /// `GET /api/v1/events?since=R&type=a,b` (or `Last-Event-ID: R`): Server-Sent Events of every
    /// change after the cursor, then live. History already compacted is refused with 410 before the
    /// stream starts; if the store loses history mid-stream, an `event: error` ends it.
    /// `timeout_seconds=N` ends the stream after N seconds whatever happens (Kubernetes' watch
    /// `timeoutSeconds`): a client that wants bounded requests resumes with Last-Event-ID.
    func events(_ request: Request) async throws -> Response {
        var filter: Set<ClusterEventType>?
        if let text = request.query("type") {
            var set = Set<ClusterEventType>()
            for name in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let type = ClusterEventType(rawValue: String(name)) else {
                    throw APIError.invalid("type", "unknown event type \"\(name)\"; use \(ClusterEventType.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                set.insert(type)
            }
            filter = set
        }
        let timeout = try request.int64Query("timeout_seconds", range: 1...Self.maxEventStreamSeconds).map { Duration.seconds($0) }
        // A reconnecting EventSource sends Last-Event-ID with the original URL: the header is newer.
        var cursor: EventCursor?
        if let header = request.headers[.lastEventID], !header.isEmpty {
            cursor = try EventCursor(parsing: header, field: "Last-Event-ID")
        } else if let since = request.query("since") {
            cursor = try EventCursor(parsing: since, field: "since")
        }
        // Checked here for a plain 503; the body checks again as it registers (streams opened
        // side by side may both pass here), and ends the stream with an `event: error` if full.
        let maxStreams = configuration.maxEventStreams
        if streams.count >= maxStreams {
            streams.refused.add(1, ordering: .relaxed)
            // Returned rather than thrown: the error path sets no Retry-After.
            return Self.tooManyEventStreams(maxStreams).response(headers: [.retryAfter: "5"])
        }
        let store = repository.store
        let now = try await currentRevision()
        if let from = cursor?.watchFrom, from <= now {
            // Ask the store whether it still has that history, so the answer can be a plain 410.
            try await bounded {
                do {
                    _ = try await store.range(RangeRequest(key: ClusterRepository.leaderKey, revision: from, countOnly: true),
                                              consistency: .serializable)
                } catch StoreError.compacted(let oldest) {
                    throw APIError(status: 410, code: "compacted",
                                   message: "events after revision \(from - 1) have been compacted (oldest available: revision \(oldest)); list the current state and resume from its revision")
                }
            }
        }
        let from = cursor?.watchFrom ?? now + 1
        let encoder = EventStreamEncoder(filter: filter, cursor: cursor)
        let keepalive = configuration.keepaliveInterval
        let backlogLimit = configuration.eventStreamBacklogBytes
        let streams = self.streams

        let body = ResponseBody { writer in
            // Registered only once the body is being written: a response that is never sent holds nothing.
            let (items, continuation) = AsyncStream<EventStreamRegistry.Item>.makeStream()
            let backlog = WatchBacklog()
            guard let registration = streams.register(continuation, limit: maxStreams) else {
                streams.refused.add(1, ordering: .relaxed)
                try await writer.write(ByteBuffer(string: EventStreamEncoder.errorMessage(Self.tooManyEventStreams(maxStreams))))
                try await writer.finish(nil)
                return
            }
            defer { streams.unregister(registration) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var encoder = encoder
                    var from = from
                    do {
                        // The writer goes at the client's pace, the watch at the cluster's. A client
                        // that falls more than the backlog behind is caught up from history, as etcd
                        // catches up its slow watchers: the watch is let go (nothing more is held for
                        // it), and once the client has read half the backlog a new one starts after
                        // the last revision queued. Only history compacted meanwhile ends the stream.
                        while true {
                            var lagging = false
                            do {
                                // Scoped so that the watch is released before the wait below.
                                let watch = store.watch(key: ClusterRepository.rootPrefix, rangeEnd: KeyRange.prefixEnd(ClusterRepository.rootPrefix),
                                                        fromRevision: from, prevKV: true)
                                for try await response in watch {
                                    let text = encoder.encode(response)
                                    if text.isEmpty { continue }
                                    continuation.yield(.frames(text))
                                    if backlog.queue(text.utf8.count) > backlogLimit {
                                        lagging = true
                                        break
                                    }
                                }
                            }
                            guard lagging else { break }
                            from = encoder.cursor?.watchFrom ?? from
                            await backlog.drained(below: backlogLimit / 2)
                            try Task.checkCancellation()
                        }
                        // A watch ends without an error only when its store shuts down (or we were cancelled).
                        if !Task.isCancelled {
                            continuation.yield(.failed(.unavailable("store_unavailable", "the store ended the watch; reconnect with Last-Event-ID")))
                        }
                    } catch {
                        if !(error is CancellationError) { continuation.yield(.failed(APIError.from(error))) }
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: keepalive)
                        continuation.yield(.keepalive)
                    }
                }
                if let timeout {
                    // Ends the items, so the writer below returns and the stream closes cleanly.
                    group.addTask {
                        try await Task.sleep(for: timeout)
                        continuation.finish()
                    }
                }
                try await writer.write(ByteBuffer(string: "retry: 2000\n: events after revision \(from - 1)\n\n"))
                try await EventStreamRegistry.write(items, to: &writer, shutdownReason: "the master is shutting down; reconnect with Last-Event-ID") { text in
                    backlog.written(text.utf8.count)
                    return true
                }
                group.cancelAll()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok,
                        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache",
                                  .accelBuffering: "no", .orchestratorIndex: String(now)],
                        body: body)
    }
}
