import Store
import Synchronization

/// A `ClusterStore` whose backend is set once, after construction. The master's gRPC services
/// must exist before the Raft transport (which serves them), the transport before the Raft node,
/// and the node before the store: this breaks that cycle. Calls before `bind` fail as unavailable.
public final class LateBoundStore: ClusterStore {
    private let backend = Mutex<(any ClusterStore)?>(nil)

    public init() {}

    public func bind(_ store: any ClusterStore) {
        backend.withLock { $0 = store }
    }

    private var store: any ClusterStore {
        get throws {
            guard let store = backend.withLock({ $0 }) else { throw StoreUnavailable() }
            return store
        }
    }

    struct StoreUnavailable: Error, CustomStringConvertible {
        var description: String { "the store is still starting" }
    }

    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        try await store.range(request, consistency: consistency)
    }
    public func put(_ request: PutRequest) async throws -> PutResponse { try await store.put(request) }
    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse { try await store.deleteRange(request) }
    public func txn(_ request: TxnRequest) async throws -> TxnResponse { try await store.txn(request) }
    public func compact(revision: Int64) async throws { try await store.compact(revision: revision) }
    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant { try await store.grantLease(ttl: ttl, id: id) }
    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant { try await store.keepAlive(id) }
    public func revokeLease(_ id: LeaseID) async throws { try await store.revokeLease(id) }
    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus { try await store.timeToLive(id) }
    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        do {
            return try store.watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV)
        } catch {
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
    }
}
