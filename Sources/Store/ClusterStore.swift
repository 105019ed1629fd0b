/// How fresh a read must be.
public enum ReadConsistency: Sendable, Hashable {
    /// Reflects every write acknowledged before the read began, whichever master serves it
    /// (ReadIndex on the built-in store, etcd's default).
    case linearizable
    /// Served from the local replica's applied state: may lag, never goes back in time on one replica.
    case serializable
}

/// One message on a watch stream (etcd's `WatchResponse`).
public struct WatchResponse: Sendable, Hashable {
    /// The store revision this message reflects: every change up to it has been delivered.
    public var revision: Int64
    /// Changes in revision order; empty for a progress notification.
    public var events: [WatchEvent]

    public init(revision: Int64, events: [WatchEvent]) {
        self.revision = revision
        self.events = events
    }

    /// A progress notification: nothing changed in the watched range up to `revision`.
    public var isProgressNotify: Bool { events.isEmpty }
}

/// What a lease grant or keep-alive reports.
public struct LeaseGrant: Sendable, Hashable {
    public var id: LeaseID
    /// Seconds until expiry without a keep-alive.
    public var ttl: Int64

    public init(id: LeaseID, ttl: Int64) {
        self.id = id
        self.ttl = ttl
    }
}

/// Everything the orchestrator keeps goes through this protocol, with etcd's semantics, so it runs
/// unchanged on the built-in Raft store (`RaftStore`), on an external etcd (`EtcdStore`) and, in
/// unit tests, on `MemoryStore`. Errors are `StoreError` where the store refused the request, or
/// the backend's own transport/consensus errors.
public protocol ClusterStore: Sendable {
    func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse
    func put(_ request: PutRequest) async throws -> PutResponse
    func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse
    func txn(_ request: TxnRequest) async throws -> TxnResponse
    /// Discards history before `revision`; reads and watches below it then fail with `.compacted`.
    func compact(revision: Int64) async throws

    /// Grants a lease of `ttl` seconds; `id` 0 lets the store choose one.
    func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant
    /// Renews a lease for its full TTL.
    func keepAlive(_ id: LeaseID) async throws -> LeaseGrant
    /// Revokes a lease and deletes every key attached to it.
    func revokeLease(_ id: LeaseID) async throws
    func timeToLive(_ id: LeaseID) async throws -> LeaseStatus

    /// Changes to `key` (or the range up to `rangeEnd`) from `fromRevision` on (0: from now), in
    /// revision order, without gaps or duplicates. The stream fails with `StoreError.compacted` when
    /// `fromRevision` is below the compacted revision; it ends when the consumer stops iterating.
    func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error>
}

extension ClusterStore {
    /// The value of one key, or nil.
    public func get(_ key: [UInt8], consistency: ReadConsistency = .linearizable) async throws -> KeyValue? {
        try await range(RangeRequest(key: key), consistency: consistency).kvs.first
    }

    /// Every key starting with `prefix`, sorted by key.
    public func list(prefix: [UInt8], consistency: ReadConsistency = .linearizable) async throws -> RangeResponse {
        try await range(RangeRequest(key: prefix, rangeEnd: KeyRange.prefixEnd(prefix)), consistency: consistency)
    }

    /// Sets `key` to `value`.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], lease: LeaseID = 0) async throws -> PutResponse {
        try await put(PutRequest(key: key, value: value, lease: lease))
    }

    /// Deletes `key`.
    @discardableResult
    public func delete(_ key: [UInt8]) async throws -> DeleteRangeResponse {
        try await deleteRange(DeleteRangeRequest(key: key))
    }
}
