import EtcdProto
import GRPCCore
import Store

/// etcd's `KV` service over a `ClusterStore`: reads are linearizable unless the request sets
/// `serializable`; writes go through the store (a follower forwards them to the leader).
struct KVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let core: ServerCore

    /// How often an `ignore_value`/`ignore_lease` put retries its compare-and-swap when the key
    /// keeps changing underneath it.
    static let ignoreRetries = 100

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse {
        try await etcdCall {
            var read = try Convert.range(request)
            let filtered = Convert.hasRevisionFilters(request)
            // The filters apply before the limit, as in etcd, so the store reads everything.
            if filtered { read.limit = 0 }
            var result = try await core.store.range(read, consistency: request.serializable ? .serializable : .linearizable)
            if filtered { result = Convert.filter(result, request) }
            return Etcdserverpb_RangeResponse(result, header: core.header(revision: result.revision))
        }
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        try await etcdCall {
            if request.ignoreValue || request.ignoreLease {
                return try await putKeepingFields(request)
            }
            let result = try await core.store.put(Convert.put(request))
            return Etcdserverpb_PutResponse(result, header: core.header(revision: result.revision))
        }
    }

    /// `ignore_value` / `ignore_lease`: rewrite the key with its current value or lease. The store
    /// has no such operation, so it is a compare-and-swap on the key's mod revision, retried if
    /// another write slips in between the read and the swap.
    private func putKeepingFields(_ request: Etcdserverpb_PutRequest) async throws -> Etcdserverpb_PutResponse {
        if request.key.isEmpty { throw EtcdAPIError.store(.emptyKey) }
        if request.ignoreValue && !request.value.isEmpty { throw EtcdAPIError.valueProvided }
        if request.ignoreLease && request.lease != 0 { throw EtcdAPIError.leaseProvided }
        let key = [UInt8](request.key)
        for _ in 0..<Self.ignoreRetries {
            guard let current = try await core.store.range(RangeRequest(key: key), consistency: .linearizable).kvs.first else {
                throw EtcdAPIError.keyNotFound
            }
            var put = Convert.put(request)
            if request.ignoreValue { put.value = current.value }
            if request.ignoreLease { put.lease = current.lease }
            let txn = TxnRequest(compares: [Compare(key: key, .equal, .modRevision(current.modRevision))],
                                 success: [.put(put)])
            let result = try await core.store.txn(txn)
            if result.succeeded, case .put(let response)? = result.responses.first {
                return Etcdserverpb_PutResponse(response, header: core.header(revision: result.revision))
            }
        }
        throw EtcdAPIError.unavailable(reason: "etcdserver: request timed out (the key kept changing)")
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws -> Etcdserverpb_DeleteRangeResponse {
        try await etcdCall {
            let result = try await core.store.deleteRange(Convert.deleteRange(request))
            return Etcdserverpb_DeleteRangeResponse(result, header: core.header(revision: result.revision))
        }
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        try await etcdCall {
            let result = try await core.store.txn(Convert.txn(request))
            return Etcdserverpb_TxnResponse(result, header: core.header(revision: result.revision))
        }
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws -> Etcdserverpb_CompactionResponse {
        try await etcdCall {
            // `physical` needs no waiting: the store drops compacted history when it applies.
            try await core.store.compact(revision: request.revision)
            var response = Etcdserverpb_CompactionResponse()
            response.header = try await core.currentHeader()
            return response
        }
    }
}
