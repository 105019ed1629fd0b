import EtcdProto
import Foundation
import GRPCCore
import Store

/// etcd's `Lease` service over a `ClusterStore`.
struct LeaseService: Etcdserverpb_Lease.SimpleServiceProtocol {
    let core: ServerCore

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseGrantResponse {
        try await etcdCall {
            if request.ttl > maxLeaseTTL { throw EtcdAPIError.store(.invalidTTL(request.ttl)) }
            // etcd raises short TTLs to its minimum rather than refusing them.
            let ttl = max(request.ttl, core.configuration.minLeaseTTL)
            let grant = try await core.store.grantLease(ttl: ttl, id: request.id)
            var response = Etcdserverpb_LeaseGrantResponse()
            response.header = try await core.currentHeader()
            response.id = grant.id
            response.ttl = grant.ttl
            return response
        }
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseRevokeResponse {
        try await etcdCall {
            try await core.store.revokeLease(request.id)
            var response = Etcdserverpb_LeaseRevokeResponse()
            response.header = try await core.currentHeader()
            return response
        }
    }

    /// One answer per request, in order. A lease that does not exist (any more) is answered with
    /// TTL 0 rather than an error, as etcd does, so the client's keep-alive loop learns it expired.
    func leaseKeepAlive(
        request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>,
        response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>,
        context: ServerContext
    ) async throws {
        for try await keepAlive in request {
            let answer = try await etcdCall {
                var answer = Etcdserverpb_LeaseKeepAliveResponse()
                answer.id = keepAlive.id
                do {
                    answer.ttl = try await core.store.keepAlive(keepAlive.id).ttl
                } catch StoreError.leaseNotFound {
                    answer.ttl = 0
                }
                answer.header = try await core.currentHeader()
                return answer
            }
            try await response.write(answer)
        }
    }

    /// A lease that does not exist is answered with TTL -1, as etcd does (`etcdctl` then prints
    /// "lease ... already expired").
    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseTimeToLiveResponse {
        try await etcdCall {
            var response = Etcdserverpb_LeaseTimeToLiveResponse()
            response.id = request.id
            do {
                let status = try await core.store.timeToLive(request.id)
                response.ttl = status.ttl
                response.grantedTtl = status.grantedTTL
                if request.keys { response.keys = status.keys.map { Data($0) } }
            } catch StoreError.leaseNotFound {
                response.ttl = -1
            }
            response.header = try await core.currentHeader()
            return response
        }
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseLeasesResponse {
        guard let listing = core.store as? any LeaseListing else {
            throw core.unimplemented("etcdserverpb.Lease/LeaseLeases", reason: "this store cannot list leases")
        }
        return try await etcdCall {
            var response = Etcdserverpb_LeaseLeasesResponse()
            response.leases = try await listing.leaseIDs().map { id in
                var status = Etcdserverpb_LeaseStatus()
                status.id = id
                return status
            }
            response.header = try await core.currentHeader()
            return response
        }
    }
}
