import Synchronization

/// A single-node `ClusterStore` in memory, for unit tests and `master --dev`.
///
/// Every write goes through `KeyValueStore.apply(_:)`, the very function each Raft replica runs, so
/// its semantics cannot drift from `RaftStore`'s. Time comes from the injected `now` (milliseconds):
/// with no leader to run an expiry loop, any call first revokes the leases that `now` says have
/// expired, so a test advances its clock and the next call sees the keys gone.
public final class MemoryStore: ClusterStore {
    private let state: Mutex<KeyValueStore>
    private let hub = WatchHub()
    var watchHub: WatchHub { hub }
    private let now: @Sendable () -> Int64

    /// - Parameter now: the clock for lease expiry, in milliseconds (defaults to the wall clock).
    public init(store: KeyValueStore = KeyValueStore(), now: @escaping @Sendable () -> Int64 = MemoryStore.wallClock) {
        self.state = Mutex(store)
        self.now = now
        hub.advance(to: store.revision)
    }

    /// Milliseconds of a monotonic clock since the first use; only differences matter for leases.
    public static let wallClock: @Sendable () -> Int64 = {
        let c = (ContinuousClock.now - epoch).components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }

    private static let epoch = ContinuousClock.now

    /// A copy of the current state (tests, diagnostics).
    public var store: KeyValueStore { state.withLock { $0 } }

    // MARK: Applying commands

    /// Revokes expired leases, then applies `command`; both publish their events while the lock is
    /// held, so watchers get them in revision order even when writers race.
    private func apply(_ command: Command) -> Response {
        let time = now()
        return state.withLock { store in
            expire(&store, at: time)
            let applied = store.apply(command)
            hub.publish(applied.events)
            return applied.response
        }
    }

    /// Revokes every lease expired at `time`, as a Raft leader's `LeaseExpirer` would propose.
    private func expire(_ store: inout KeyValueStore, at time: Int64) {
        for id in store.expiredLeases(now: time) {
            hub.publish(store.apply(.leaseRevoke(id: id)).events)
        }
    }

    /// Runs a read after revoking expired leases, so reads never see a key whose lease is over.
    private func read<T: Sendable>(_ body: (inout KeyValueStore, Int64) throws(StoreError) -> T) throws(StoreError) -> T {
        let time = now()
        return try state.withLock { (store) throws(StoreError) -> T in
            expire(&store, at: time)
            return try body(&store, time)
        }
    }

    // MARK: ClusterStore

    /// Both consistencies read the one copy there is.
    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        try read { store, _ throws(StoreError) in try store.range(request) }
    }

    public func put(_ request: PutRequest) async throws -> PutResponse {
        try apply(.put(request)).putResponse()
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse {
        try apply(.deleteRange(request)).deleteRangeResponse()
    }

    public func txn(_ request: TxnRequest) async throws -> TxnResponse {
        try apply(.txn(request)).txnResponse()
    }

    public func compact(revision: Int64) async throws {
        try apply(.compact(revision: revision)).compactResponse()
    }

    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant {
        try apply(.leaseGrant(id: id, ttl: ttl, now: now())).leaseGrantResponse()
    }

    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant {
        try apply(.leaseKeepAlive(id: id, now: now())).leaseKeepAliveResponse()
    }

    public func revokeLease(_ id: LeaseID) async throws {
        try apply(.leaseRevoke(id: id)).leaseRevokeResponse()
    }

    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus {
        try read { store, time throws(StoreError) in try store.timeToLive(id, now: time) }
    }

    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        // Under the store lock, like `apply`'s publish: store lock, then hub lock, always.
        let time = now()
        return state.withLock { store in
            expire(&store, at: time)
            return hub.watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV) { key, rangeEnd, from, prevKV in
                (try store.events(key: key, rangeEnd: rangeEnd, fromRevision: from, prevKV: prevKV), store.revision)
            }
        }
    }
}

extension MemoryStore {
    /// Watches open on this store (tests, diagnostics).
    public var openWatches: Int { hub.count }
}

extension MemoryStore: WatchProgressNotifying, LeaseListing {
    public func notifyWatchProgress() {
        // Store lock, then hub lock: the order `apply` and `watch` use.
        state.withLock { _ in hub.notifyProgress() }
    }

    public func leaseIDs() async throws -> [LeaseID] {
        try read { store, _ in store.leaseIDs }
    }
}
