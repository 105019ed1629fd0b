import EtcdProto
import GRPCCore
import Store
import Synchronization

/// etcd's `Watch` service: one bidirectional stream carries any number of watches.
struct WatchService: Etcdserverpb_Watch.SimpleServiceProtocol {
    let core: ServerCore

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<Etcdserverpb_WatchResponse>,
        context: ServerContext
    ) async throws {
        try await WatchSession(core: core).run(requests: request, writer: response)
    }
}

/// The watches of one stream, as etcd's `serverWatchStream`.
///
/// - Requests are handled one at a time, so `created` answers go out in the order of the create
///   requests (clientv3 matches them by order).
/// - Every answer goes through one outbox, written by one task: the `RPCWriter` needs a single
///   writer, and an answer queued under the session's lock is ordered with respect to cancels.
/// - Each watch runs a task that relays its store watch: events (filtered, in revision order),
///   then, if the store ends it with `.compacted`, a `compact_revision` + `canceled` answer.
final class WatchSession: Sendable {
    private struct Watch {
        var task: Task<Void, Never>?
        var progressNotify: Bool
        /// Whether events went out since the last progress notification (etcd skips the periodic
        /// notification for watches that just got events).
        var sentEvents = false
        /// A `progress_request` is waiting for this watch's next progress notification.
        var progressRequested = false
    }

    private struct State {
        var watches: [Int64: Watch] = [:]
        /// The next id to hand out; etcd numbers a stream's watches from 0.
        var nextID: Int64 = 0
    }

    private let core: ServerCore
    private let state = Mutex(State())
    private let outbox: AsyncStream<Etcdserverpb_WatchResponse>
    private let outboxInput: AsyncStream<Etcdserverpb_WatchResponse>.Continuation
    /// Event bytes in the outbox (the writer waits for the client: the transport's backpressure).
    /// Past `watchBacklogBytes` a relay lets go of its store watch until the client has read half
    /// of them, then catches up from history.
    private let backlog = WatchBacklog()

    /// Most events in one answer; a long history is split (between revisions) so no message grows
    /// without bound.
    static let maxEventsPerResponse = 1000

    init(core: ServerCore) {
        self.core = core
        (outbox, outboxInput) = AsyncStream.makeStream()
    }

    func run(requests: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
             writer: RPCWriter<Etcdserverpb_WatchResponse>) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in self.outbox {
                    try await writer.write(message)
                    self.backlog.written(Self.eventBytes(message))
                }
            }
            group.addTask {
                defer { self.close() }
                for try await request in requests {
                    try await self.handle(request)
                }
            }
            // The first to end (client closed, write failed) ends the other.
            defer { group.cancelAll() }
            try await group.next()
            try await group.next()
        }
    }

    /// Cancels every watch and lets the writer drain what is queued.
    private func close() {
        let tasks = state.withLock { s in
            defer { s.watches = [:] }
            core.openWatches.subtract(s.watches.count, ordering: .relaxed)
            return s.watches.values.map { w in
                if w.progressNotify { core.progressWatches.subtract(1, ordering: .relaxed) }
                return w.task
            }
        }
        for task in tasks { task?.cancel() }
        outboxInput.finish()
    }

    private func handle(_ request: Etcdserverpb_WatchRequest) async throws {
        switch request.requestUnion {
        case .createRequest(let create): await self.create(create)
        case .cancelRequest(let cancel): await self.cancel(cancel.watchID)
        case .progressRequest:
            state.withLock { s in for id in s.watches.keys { s.watches[id]!.progressRequested = true } }
            core.requestWatchProgress()
        case nil: break
        }
    }

    private func create(_ create: Etcdserverpb_WatchCreateRequest) async {
        let key = [UInt8](create.key), rangeEnd = [UInt8](create.rangeEnd)
        let current: Int64
        do {
            // The created answer's revision is where a watch "from now" starts: everything after it.
            current = try await core.currentRevision()
        } catch {
            return refuseCreate(EtcdAPIError(error).description)
        }
        let configuration = core.configuration
        let outcome: Result<Int64, EtcdAPIError> = state.withLock { s in
            var id = create.watchID
            if s.watches.count >= configuration.maxWatchesPerStream {
                return .failure(.tooManyWatches("\(configuration.maxWatchesPerStream) watches are open on this stream"))
            }
            if id != 0 {
                if s.watches[id] != nil { return .failure(.duplicateWatchID(create.watchID)) }
            } else {
                while s.watches[s.nextID] != nil { s.nextID += 1 }
                id = s.nextID
                s.nextID += 1
            }
            // Each watch holds a store watch and up to a backlog of events: bounded per member too.
            if core.openWatches.add(1, ordering: .relaxed).newValue > configuration.maxWatches {
                core.openWatches.subtract(1, ordering: .relaxed)
                return .failure(.tooManyWatches("\(configuration.maxWatches) watches are open on this member"))
            }
            s.watches[id] = Watch(progressNotify: create.progressNotify)
            if create.progressNotify { core.progressWatches.add(1, ordering: .relaxed) }
            var created = Etcdserverpb_WatchResponse()
            created.header = core.header(revision: current)
            created.watchID = id
            created.created = true
            outboxInput.yield(created)
            return .success(id)
        }
        let id: Int64
        switch outcome {
        case .success(let value): id = value
        case .failure(let error):
            if case .tooManyWatches = error { core.refusedWatches.add(1, ordering: .relaxed) }
            return refuseCreate(error.description)
        }
        let from = create.startRevision > 0 ? create.startRevision : current + 1
        let store = core.store, prevKV = create.prevKv
        let open: @Sendable (Int64) -> AsyncThrowingStream<WatchResponse, any Error> = { from in
            store.watch(key: key, rangeEnd: rangeEnd, fromRevision: from, prevKV: prevKV)
        }
        // The first store watch opens now, before the next request is handled (a write
        // acknowledged after the created answer must be seen).
        let first = TakeOnce(open(from))
        let noPut = create.filters.contains(.noput), noDelete = create.filters.contains(.nodelete)
        let task = Task { await self.relay(id: id, first: first, from: from, open: open, noPut: noPut, noDelete: noDelete) }
        let stillOpen = state.withLock { s in
            guard s.watches[id] != nil else { return false }
            s.watches[id]!.task = task
            return true
        }
        if !stillOpen { task.cancel() }
    }

    /// etcd's answer to a create it cannot honour: created and canceled at once, with the reason.
    private func refuseCreate(_ reason: String) {
        var refused = Etcdserverpb_WatchResponse()
        refused.header = core.header(revision: 0)
        refused.watchID = -1
        refused.created = true
        refused.canceled = true
        refused.cancelReason = reason
        outboxInput.yield(refused)
    }

    private func cancel(_ id: Int64) async {
        let revision = (try? await core.currentRevision()) ?? 0
        let task: Task<Void, Never>?? = state.withLock { s in
            guard let w = s.watches.removeValue(forKey: id) else { return nil }
            core.openWatches.subtract(1, ordering: .relaxed)
            if w.progressNotify { core.progressWatches.subtract(1, ordering: .relaxed) }
            var canceled = Etcdserverpb_WatchResponse()
            canceled.header = core.header(revision: revision)
            canceled.watchID = id
            canceled.canceled = true
            outboxInput.yield(canceled)
            return w.task
        }
        // An unknown id gets no answer, as in etcd.
        if let task { task?.cancel() }
    }

    /// Queues `message` for watch `id` unless the watch was canceled meanwhile (under the lock,
    /// so nothing of a watch follows its `canceled` answer). `update` runs on the watch's state.
    @discardableResult
    private func send(_ id: Int64, _ message: Etcdserverpb_WatchResponse, update: (inout Watch) -> Bool = { _ in true }) -> Bool {
        state.withLock { s in
            guard s.watches[id] != nil, update(&s.watches[id]!) else { return false }
            outboxInput.yield(message)
            return true
        }
    }

    /// Relays one store watch to the client until it ends, fails or is canceled.
    ///
    /// A client that reads slower than the cluster changes makes the outbox grow; past
    /// `watchBacklogBytes` this lets go of the store watch (which then holds nothing for it),
    /// waits until the client has read half the backlog, and watches again from the first
    /// revision not yet queued: etcd's catch-up of its slow watchers. History compacted meanwhile
    /// cancels the watch with `compact_revision`, as for any start below the compaction.
    private func relay(id: Int64, first: TakeOnce<AsyncThrowingStream<WatchResponse, any Error>>, from: Int64,
                       open: @Sendable (Int64) -> AsyncThrowingStream<WatchResponse, any Error>,
                       noPut: Bool, noDelete: Bool) async {
        let limit = core.configuration.watchBacklogBytes
        var next = from
        do {
            while true {
                var lagging = false
                do {
                    // Scoped, and the first one taken out of its box, so that the store watch is
                    // released (its hub forgets it) before the wait below.
                    let stream = first.take() ?? open(next)
                    for try await response in stream {
                        if response.isProgressNotify {
                            var message = Etcdserverpb_WatchResponse()
                            message.header = core.header(revision: response.revision)
                            message.watchID = id
                            send(id, message) { w in
                                let wanted = w.progressRequested || (w.progressNotify && !w.sentEvents)
                                w.progressRequested = false
                                w.sentEvents = false
                                return wanted
                            }
                            next = max(next, response.revision + 1)
                            continue
                        }
                        let events = response.events.filter { e in !(noPut && e.kind == .put) && !(noDelete && e.kind == .delete) }
                        var queued = 0
                        for (chunk, revision) in Self.split(events, revision: response.revision) {
                            var message = Etcdserverpb_WatchResponse()
                            message.header = core.header(revision: revision)
                            message.watchID = id
                            message.events = chunk.map(Mvccpb_Event.init)
                            let sent = send(id, message) { w in
                                w.sentEvents = true
                                return true
                            }
                            if sent { queued += Self.eventBytes(message) }
                        }
                        next = response.revision + 1
                        if queued > 0 && backlog.queue(queued) > limit {
                            lagging = true
                            break
                        }
                    }
                }
                guard lagging else { break }
                await backlog.drained(below: limit / 2)
                if Task.isCancelled { return }
            }
            if Task.isCancelled { return }
            // The store ended the watch without an error: it is shutting down.
            end(id, reason: "etcdserver: server stopped", compactRevision: 0)
        } catch StoreError.compacted(let revision) {
            end(id, reason: "", compactRevision: revision)
        } catch {
            if Task.isCancelled { return }
            end(id, reason: EtcdAPIError(error).description, compactRevision: 0)
        }
    }

    /// Cancels watch `id` from the server side: etcd's answer for a compacted start revision
    /// (compact_revision and canceled) or for a failure (canceled and cancel_reason).
    private func end(_ id: Int64, reason: String, compactRevision: Int64) {
        var message = Etcdserverpb_WatchResponse()
        message.header = core.header(revision: max(compactRevision, 0))
        message.watchID = id
        message.canceled = true
        message.compactRevision = compactRevision
        message.cancelReason = reason
        state.withLock { s in
            guard let w = s.watches.removeValue(forKey: id) else { return }
            core.openWatches.subtract(1, ordering: .relaxed)
            if w.progressNotify { core.progressWatches.subtract(1, ordering: .relaxed) }
            outboxInput.yield(message)
        }
    }

    /// What an answer's events weigh in the outbox: keys, values and previous values, plus a
    /// little for the rest. Answers without events weigh nothing.
    static func eventBytes(_ message: Etcdserverpb_WatchResponse) -> Int {
        message.events.reduce(0) { $0 + 32 + $1.kv.key.count + $1.kv.value.count + $1.prevKv.key.count + $1.prevKv.value.count }
    }

    /// Splits events into answers of at most `maxEventsPerResponse` events, cutting only between
    /// revisions; each answer but the last carries its last event's revision in the header.
    static func split(_ events: [WatchEvent], revision: Int64) -> [(ArraySlice<WatchEvent>, Int64)] {
        if events.isEmpty { return [] }
        if events.count <= maxEventsPerResponse { return [(events[...], revision)] }
        var chunks: [(ArraySlice<WatchEvent>, Int64)] = []
        var start = 0
        while start < events.count {
            var end = min(start + maxEventsPerResponse, events.count)
            // Keep one revision's events together (a txn's writes share a revision): cut at the
            // last revision boundary inside the chunk, or after the revision if it fills the chunk.
            var boundary = end
            while boundary < events.count && boundary > start
                && events[boundary].kv.modRevision == events[boundary - 1].kv.modRevision {
                boundary -= 1
            }
            if boundary > start {
                end = boundary
            } else {
                while end < events.count && events[end].kv.modRevision == events[end - 1].kv.modRevision { end += 1 }
            }
            let last = end == events.count ? revision : events[end - 1].kv.modRevision
            chunks.append((events[start..<end], last))
            start = end
        }
        return chunks
    }
}

/// A value handed over once: a task's closure captures the box, and whoever takes the value
/// holds the only reference to it.
final class TakeOnce<Value: Sendable>: Sendable {
    private let value: Mutex<Value?>

    init(_ value: Value) {
        self.value = Mutex(value)
    }

    func take() -> Value? {
        value.withLock { value in
            defer { value = nil }
            return value
        }
    }
}
