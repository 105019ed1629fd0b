import Synchronization

/// Serves watches for one replica: history from the store's event log, then live events, with no
/// gap and no duplicate between the two. `MemoryStore` and `RaftStore` both use it, so watches behave
/// the same on the single-node and the replicated store.
///
/// How the hand-over stays exact: `watch` reads the history *and* registers the watcher while the
/// hub's lock is held, and `publish` takes the same lock. Every event committed after that read is
/// therefore published after the registration (no gap). An event the read already returned may
/// still be published afterwards (on a Raft replica the state machine applies an entry, then calls
/// `publish` outside its own lock), so each watcher remembers the first revision it has not yet
/// seen and drops anything older (no duplicate). Callers must publish in revision order.
///
/// Lock order: a caller may hold its own store lock while calling `watch` or `publish` (MemoryStore
/// does, for both) or take its store lock inside `watch`'s `history` closure (RaftStore does), but
/// never both ways for one hub.
public final class WatchHub: Sendable {
    private struct Watcher {
        var key: [UInt8]
        var rangeEnd: [UInt8]
        var prevKV: Bool
        /// The lowest revision this watcher has not been sent yet.
        var nextRevision: Int64
        var continuation: AsyncThrowingStream<WatchResponse, any Error>.Continuation
    }

    private struct State {
        var watchers: [UInt64: Watcher] = [:]
        var nextID: UInt64 = 0
        /// Set by `finishAll`: later watches fail at once with this error.
        var closed: (any Error)?
        /// The newest revision the hub knows the store has reached: the last one published, or a
        /// newer one a watch's history was read at. Progress notifications never claim beyond it.
        var revision: Int64 = 0
        /// Tasks waiting for `revision` to reach theirs (``waitForRevision(_:)``), by id.
        var revisionWaiters: [UInt64: (revision: Int64, continuation: CheckedContinuation<Void, any Error>)] = [:]
        /// The lowest revision any waiter wants: `publish` looks at the waiters only past it.
        var lowestWaited: Int64 = .max
    }

    private let state = Mutex(State())

    public init() {}

    /// Opens a watch. `history` is called once, synchronously and under the hub's lock; it must
    /// return what `KeyValueStore.events(key:rangeEnd:fromRevision:prevKV:)` returns for this watch
    /// and the store's current revision, read from one consistent state (or throw, e.g.
    /// `.compacted`, which fails the stream).
    public func watch(
        key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool,
        history: (_ key: [UInt8], _ rangeEnd: [UInt8], _ fromRevision: Int64, _ prevKV: Bool) throws -> (events: [WatchEvent], revision: Int64)
    ) -> AsyncThrowingStream<WatchResponse, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchResponse, any Error>.makeStream()
        let outcome: Result<UInt64, any Error> = state.withLock { s in
            if let error = s.closed { return .failure(error) }
            do {
                let (events, revision) = try history(key, rangeEnd, fromRevision, prevKV)
                s.revision = max(s.revision, revision)
                if !events.isEmpty { continuation.yield(WatchResponse(revision: revision, events: events)) }
                // A watch from a future revision skips everything before it, as in etcd.
                let next = max(revision + 1, fromRevision)
                let id = s.nextID
                s.nextID += 1
                s.watchers[id] = Watcher(key: key, rangeEnd: rangeEnd, prevKV: prevKV, nextRevision: next,
                                         continuation: continuation)
                return .success(id)
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let id):
            // Set outside the lock: termination may run synchronously and takes the lock itself.
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
            }
        case .failure(let error):
            continuation.finish(throwing: error)
        }
        return stream
    }

    /// Delivers the events of one applied command (all at one revision) to every matching watcher.
    /// Must be called in revision order.
    ///
    /// Every command that changes the revision produces events and moves it by exactly one, so a
    /// watcher expecting revision `n` that is offered a later one has missed changes: a Raft replica
    /// that installed a snapshot skipped them without publishing. Such a watcher fails with
    /// `.compacted` (the revision from which this replica can serve it again), the same answer as
    /// for history that is gone, so its client re-reads and watches again instead of silently
    /// missing a change.
    public func publish(_ events: [WatchEvent]) {
        guard let revision = events.first?.kv.modRevision else { return }
        var reached: [CheckedContinuation<Void, any Error>] = []
        let gapped = state.withLock { s -> [AsyncThrowingStream<WatchResponse, any Error>.Continuation] in
            s.revision = max(s.revision, revision)
            reached = Self.takeReached(&s)
            var gapped: [AsyncThrowingStream<WatchResponse, any Error>.Continuation] = []
            for (id, w) in s.watchers where w.nextRevision <= revision {
                if w.nextRevision < revision {
                    s.watchers[id] = nil
                    gapped.append(w.continuation)
                    continue
                }
                var matching: [WatchEvent] = []
                for event in events where KeyValueStore.matches(event, key: w.key, rangeEnd: w.rangeEnd) {
                    var e = event
                    if !w.prevKV { e.prevKV = nil }
                    matching.append(e)
                }
                s.watchers[id]!.nextRevision = revision + 1
                if !matching.isEmpty { w.continuation.yield(WatchResponse(revision: revision, events: matching)) }
            }
            return gapped
        }
        // Outside the lock: finishing runs the termination handler, which takes it.
        for c in gapped { c.finish(throwing: StoreError.compacted(revision)) }
        for c in reached { c.resume() }
    }

    /// The store jumped to `revision` without events (a Raft replica installed a snapshot): wakes
    /// the revision waiters it satisfies. Watchers learn of the gap at the next `publish`.
    public func advance(to revision: Int64) {
        let reached = state.withLock { s in
            s.revision = max(s.revision, revision)
            return Self.takeReached(&s)
        }
        for c in reached { c.resume() }
    }

    /// Returns once the store this hub serves has applied `revision` (the apply publishes, and this
    /// wakes on it: no polling). Throws `CancellationError` when the calling task is cancelled, and
    /// the hub's closing error once it is closed.
    public func waitForRevision(_ revision: Int64) async throws {
        let id = state.withLock { s -> UInt64? in
            guard s.revision < revision, s.closed == nil else { return nil }
            defer { s.nextID += 1 }
            return s.nextID
        }
        guard let id else {
            if let error = state.withLock({ $0.closed }) { throw error }
            return
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: Result<Bool, any Error> = state.withLock { s in
                    if let error = s.closed { return .failure(error) }
                    // Reached, or cancelled, between the check above and now.
                    if s.revision >= revision || Task.isCancelled { return .success(true) }
                    s.revisionWaiters[id] = (revision, continuation)
                    s.lowestWaited = min(s.lowestWaited, revision)
                    return .success(false)
                }
                switch outcome {
                case .success(true): continuation.resume()
                case .success(false): break
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.revisionWaiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }

    /// Removes and returns the waiters `s.revision` satisfies.
    private static func takeReached(_ s: inout State) -> [CheckedContinuation<Void, any Error>] {
        guard s.revision >= s.lowestWaited else { return [] }
        var reached: [CheckedContinuation<Void, any Error>] = []
        var lowest = Int64.max
        for (id, waiter) in s.revisionWaiters {
            if waiter.revision <= s.revision {
                reached.append(waiter.continuation)
                s.revisionWaiters[id] = nil
            } else {
                lowest = min(lowest, waiter.revision)
            }
        }
        s.lowestWaited = lowest
        return reached
    }

    /// Makes every open watch report its progress (etcd's `RequestProgress`): each stream yields a
    /// `WatchResponse` without events at the revision up to which it has been sent every change.
    ///
    /// Exact because it runs under the hub's lock, like `publish`: everything a watcher's
    /// `nextRevision` says it was sent is already in its stream, ahead of the notification. A watch
    /// that starts at a future revision reports the hub's current revision (nothing it could see
    /// has happened yet).
    public func notifyProgress() {
        state.withLock { s in
            for w in s.watchers.values {
                w.continuation.yield(WatchResponse(revision: min(w.nextRevision - 1, s.revision), events: []))
            }
        }
    }

    /// Ends every watch with `error` (the store is shutting down) and refuses new ones.
    public func finishAll(throwing error: any Error) {
        let (continuations, waiters) = state.withLock { s in
            s.closed = error
            defer {
                s.watchers = [:]
                s.revisionWaiters = [:]
            }
            return (s.watchers.values.map(\.continuation), s.revisionWaiters.values.map(\.continuation))
        }
        // Outside the lock: finishing runs the termination handlers, which take it.
        for c in continuations { c.finish(throwing: error) }
        for c in waiters { c.resume(throwing: error) }
    }

    /// Number of open watches (tests, diagnostics).
    public var count: Int { state.withLock { $0.watchers.count } }

    /// Number of tasks in ``waitForRevision(_:)`` (tests, diagnostics).
    public var revisionWaiterCount: Int { state.withLock { $0.revisionWaiters.count } }
}

extension Response {
    /// The typed answers of the commands, for the shells (`MemoryStore`, `RaftStore`): a `.failure`
    /// is thrown as the `StoreError` it carries, a response of the wrong kind as `.malformed`.
    func putResponse() throws(StoreError) -> PutResponse {
        if case .put(let r) = self { return r }
        throw unexpected("put")
    }

    func deleteRangeResponse() throws(StoreError) -> DeleteRangeResponse {
        if case .deleteRange(let r) = self { return r }
        throw unexpected("deleteRange")
    }

    func txnResponse() throws(StoreError) -> TxnResponse {
        if case .txn(let r) = self { return r }
        throw unexpected("txn")
    }

    func compactResponse() throws(StoreError) {
        if case .compact = self { return }
        throw unexpected("compact")
    }

    func leaseGrantResponse() throws(StoreError) -> LeaseGrant {
        if case .leaseGrant(_, let id, let ttl) = self { return LeaseGrant(id: id, ttl: ttl) }
        throw unexpected("leaseGrant")
    }

    func leaseKeepAliveResponse() throws(StoreError) -> LeaseGrant {
        if case .leaseKeepAlive(_, let id, let ttl) = self { return LeaseGrant(id: id, ttl: ttl) }
        throw unexpected("leaseKeepAlive")
    }

    func leaseRevokeResponse() throws(StoreError) {
        if case .leaseRevoke = self { return }
        throw unexpected("leaseRevoke")
    }

    func alarmResponse() throws(StoreError) -> [StoreAlarm] {
        if case .alarm(_, let changed) = self { return changed }
        throw unexpected("alarm")
    }

    private func unexpected(_ expected: String) -> StoreError {
        if case .failure(let error) = self { return error }
        return .malformed("expected a \(expected) response, got \(self)")
    }
}
