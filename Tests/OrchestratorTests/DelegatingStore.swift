import Store

/// A test store that passes every call to `base` unless it implements the call itself: a store
/// that meddles with one call (a racing write, a count, a recorded key) writes only that one.
protocol DelegatingStore: ClusterStore {
    var base: MemoryStore { get }
}

extension DelegatingStore {
    func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        try await base.range(request, consistency: consistency)
    }
    func put(_ request: PutRequest) async throws -> PutResponse { try await base.put(request) }
    func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse { try await base.deleteRange(request) }
    func txn(_ request: TxnRequest) async throws -> TxnResponse { try await base.txn(request) }
    func compact(revision: Int64) async throws { try await base.compact(revision: revision) }
    func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant { try await base.grantLease(ttl: ttl, id: id) }
    func keepAlive(_ id: LeaseID) async throws -> LeaseGrant { try await base.keepAlive(id) }
    func revokeLease(_ id: LeaseID) async throws { try await base.revokeLease(id) }
    func timeToLive(_ id: LeaseID) async throws -> LeaseStatus { try await base.timeToLive(id) }
    func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        base.watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV)
    }
}
