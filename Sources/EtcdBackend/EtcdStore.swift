import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import NIOCore
import Store
import Synchronization

/// Why an `EtcdStore` call failed when etcd did not refuse it with one of `StoreError`'s reasons.
public enum EtcdStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No endpoint could serve the request; one line per attempt says why.
    case unavailable(attempts: [String])
    /// A write reached etcd (its stream was open) and then failed without etcd saying it was not
    /// proposed: etcd may or may not have applied it, so it was not retried on another endpoint
    /// (a txn retried blindly could report the wrong branch).
    case indeterminate(endpoint: String, reason: String)
    /// etcd refused the request with a gRPC status `StoreError` has no case for.
    case server(grpcCode: Int, message: String)
    /// etcd's answer could not be understood.
    case badResponse(String)
    /// etcd canceled the watch for a reason other than compaction.
    case watchCanceled(String)
    /// An endpoint is not an `http://host:port` or `https://host:port` URL.
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case .unavailable(let attempts): "no etcd endpoint answered: \(attempts.joined(separator: "; "))"
        case .indeterminate(let endpoint, let reason): "a write sent to \(endpoint) failed, it may or may not have been applied: \(reason)"
        case .server(let code, let message): "etcd refused the request (gRPC code \(code)): \(message)"
        case .badResponse(let why): "unexpected answer from etcd: \(why)"
        case .watchCanceled(let why): "etcd canceled the watch: \(why)"
        case .invalidEndpoint(let endpoint): "invalid etcd endpoint \(endpoint): expected http://host:port"
        }
    }
}

/// A `ClusterStore` backed by an external etcd v3 cluster (`--store=etcd`), spoken to over etcd's
/// gRPC API with the generated clients (EtcdProto), one HTTP/2 connection per endpoint.
///
/// Each connection answers etcd's HTTP/2 PINGs ahead of swift-nio-http2 (`HTTP2PingResponder`):
/// etcd is grpc-go, which probes bandwidth with about one PING per response, and swift-nio-http2
/// would otherwise close the connection after 200 of them in 30 s (DESIGN.md, "Known pitfalls").
///
/// Requests go to the endpoint that last answered; when it cannot serve, the next one is tried.
/// Reads are retried on any transient failure; writes only when they cannot have reached etcd
/// (grpc-swift had not opened their stream: connection refused, endpoint in back-off, deadline
/// passed while connecting) or etcd said it did not propose them ("no leader"), so a write is
/// never applied twice. Input that the built-in store refuses is refused here before it is sent
/// (empty keys, inverted ranges, oversized puts, invalid TTLs), with the same `StoreError`, so the
/// two stores cannot be told apart; etcd's own refusals map to `StoreError` too.
///
/// Call `shutdown()` when done: it closes the connections this store owns.
public final class EtcdStore: ClusterStore {
    /// Tuning; the defaults suit a LAN etcd cluster.
    public struct Configuration: Sendable {
        /// Time for one unary request to one endpoint, waiting for its connection included, before
        /// the next endpoint is tried (or, for a write already sent, before it is indeterminate).
        public var requestTimeout: Duration = .seconds(10)
        /// Ask etcd for periodic progress notifications on watches (empty `WatchResponse`s that
        /// say "everything up to this revision was delivered").
        public var watchProgressNotify: Bool = true
        /// How many times in a row a watch may fail to reach any endpoint before its stream fails.
        public var watchReconnectAttempts: Int = 10
        /// The largest answer accepted (a range over many large values).
        public var maxResponseBytes: Int = 256 * 1024 * 1024
        /// The longest wait between two attempts to reconnect to an endpoint that is down. Short,
        /// so that an etcd that restarts is used again soon (grpc-swift's default is 2 minutes).
        public var maxReconnectBackoff: Duration = .seconds(2)
        /// How `https://` endpoints are reached: by default TLS with the system's trust roots and
        /// no client certificate; a master with `--tls-*` passes mutual TLS with its own material
        /// (an etcd run with `--client-cert-auth`). `http://` endpoints are always plain text.
        public var tls: HTTP2ClientTransport.Posix.TransportSecurity = .tls

        public init() {}
    }

    /// Base URLs (`http://host:port`, no trailing slash), in the order given.
    public let endpoints: [String]
    let configuration: Configuration
    let connections: [Connection]
    let logger: Logger
    /// The endpoint that answered last: where the next request starts.
    let preferred = Mutex<Int>(0)
    /// The tasks that run each client's connections; they end when the clients shut down.
    private let runners: [Task<Void, Never>]

    /// - Parameter endpoints: etcd client URLs, e.g. `["http://etcd1:2379", "http://etcd2:2379"]`;
    ///   a bare `host:port` means `http://host:port`, and `https://` connects with TLS.
    public init(endpoints: [String], configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "orchestrator.store.etcd")) throws {
        guard !endpoints.isEmpty else { throw EtcdStoreError.invalidEndpoint("(none given)") }
        self.endpoints = try endpoints.map(Self.normalize)
        self.configuration = configuration
        self.logger = logger
        connections = try self.endpoints.map { try Connection(url: $0, configuration: configuration) }
        runners = connections.map { connection in
            let client = connection.client
            return Task { try? await client.runConnections() }
        }
    }

    /// Closes every connection once in-flight calls finish; the store must not be used afterwards.
    public func shutdown() async throws {
        for connection in connections { connection.client.beginGracefulShutdown() }
        for runner in runners { await runner.value }
    }

    static func normalize(_ endpoint: String) throws(EtcdStoreError) -> String {
        var url = String(endpoint.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        if !url.contains("://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > "https://".count else {
            throw .invalidEndpoint(endpoint)
        }
        return url
    }

    // MARK: - KV

    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        try Self.validateRange(key: request.key, rangeEnd: request.rangeEnd)
        let message = Etcdserverpb_RangeRequest(request, serializable: consistency == .serializable)
        let reply = try await call(write: false, context: .init(revision: request.revision)) { [message] connection, options in
            try await connection.kv.range(message, options: options)
        }
        return RangeResponse(reply)
    }

    public func put(_ request: PutRequest) async throws -> PutResponse {
        try Self.validatePut(request)
        let message = Etcdserverpb_PutRequest(request)
        let reply = try await call(write: true, context: .init(lease: request.lease)) { [message] connection, options in
            try await connection.kv.put(message, options: options)
        }
        return PutResponse(reply)
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse {
        try Self.validateRange(key: request.key, rangeEnd: request.rangeEnd)
        let message = Etcdserverpb_DeleteRangeRequest(request)
        let reply = try await call(write: true, context: .init()) { [message] connection, options in
            try await connection.kv.deleteRange(message, options: options)
        }
        return DeleteRangeResponse(reply)
    }

    public func txn(_ request: TxnRequest) async throws -> TxnResponse {
        var context = ErrorContext()
        for op in request.success + request.failure {
            switch op {
            case .range(let r):
                try Self.validateRange(key: r.key, rangeEnd: r.rangeEnd)
                if r.revision != 0 && context.revision == 0 { context.revision = r.revision }
            case .put(let p):
                try Self.validatePut(p)
                if p.lease != 0 && context.lease == 0 { context.lease = p.lease }
            case .deleteRange(let d):
                try Self.validateRange(key: d.key, rangeEnd: d.rangeEnd)
            }
        }
        let message = Etcdserverpb_TxnRequest(request)
        let reply = try await call(write: true, context: context) { [message] connection, options in
            try await connection.kv.txn(message, options: options)
        }
        return try TxnResponse(reply)
    }

    public func compact(revision: Int64) async throws {
        var message = Etcdserverpb_CompactionRequest()
        message.revision = revision
        // Waits until the compaction is applied to the backend, so that the call returning means
        // the same as on the built-in store.
        message.physical = true
        _ = try await call(write: true, context: .init(revision: revision)) { [message] connection, options in
            try await connection.kv.compact(message, options: options)
        }
    }

    // MARK: - Leases

    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant {
        // etcd raises a TTL below its minimum (about 2 s) instead of refusing it; the built-in store
        // refuses non-positive TTLs, so refuse them here too.
        if ttl <= 0 || ttl > maxLeaseTTL { throw StoreError.invalidTTL(ttl) }
        var message = Etcdserverpb_LeaseGrantRequest()
        message.ttl = ttl
        message.id = id
        let context = ErrorContext(lease: id, ttl: ttl)
        let reply = try await call(write: true, context: context) { [message] connection, options in
            try await connection.lease.leaseGrant(message, options: options)
        }
        if !reply.error.isEmpty {
            throw context.storeError(for: reply.error) ?? EtcdStoreError.server(grpcCode: 0, message: reply.error)
        }
        return LeaseGrant(id: reply.id, ttl: reply.ttl)
    }

    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant {
        // LeaseKeepAlive is a bidirectional stream: send one request, read one answer, half-close
        // (etcd answers every request it read before it sees the end of the stream). A keep-alive
        // changes only the lease's deadline, so repeating it on another endpoint is harmless: it
        // counts as a read for failover.
        var message = Etcdserverpb_LeaseKeepAliveRequest()
        message.id = id
        let reply = try await call(write: false, context: .init(lease: id)) { [message] connection, options in
            try await connection.lease.leaseKeepAlive(
                request: StreamingClientRequest(producer: { writer in try await writer.write(message) }),
                options: options
            ) { response in
                for try await answer in response.messages { return answer }
                throw RPCError(code: .unavailable, message: "the keep-alive stream ended without an answer")
            }
        }
        // etcd answers a keep-alive of an unknown or expired lease with TTL 0 rather than an error
        // (clientv3 turns that into ErrLeaseNotFound, as we do).
        guard reply.ttl > 0 else { throw StoreError.leaseNotFound(id) }
        return LeaseGrant(id: reply.id == 0 ? id : reply.id, ttl: reply.ttl)
    }

    public func revokeLease(_ id: LeaseID) async throws {
        var message = Etcdserverpb_LeaseRevokeRequest()
        message.id = id
        _ = try await call(write: true, context: .init(lease: id)) { [message] connection, options in
            try await connection.lease.leaseRevoke(message, options: options)
        }
    }

    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus {
        var message = Etcdserverpb_LeaseTimeToLiveRequest()
        message.id = id
        message.keys = true
        let reply = try await call(write: false, context: .init(lease: id)) { [message] connection, options in
            try await connection.lease.leaseTimeToLive(message, options: options)
        }
        // An unknown lease comes back as TTL -1, not as an error.
        guard reply.ttl >= 0 else { throw StoreError.leaseNotFound(id) }
        let keys = reply.keys.map { [UInt8]($0) }.sorted { $0.lexicographicallyPrecedes($1) }
        return LeaseStatus(id: reply.id == 0 ? id : reply.id, ttl: reply.ttl, grantedTTL: reply.grantedTtl, keys: keys)
    }

    // MARK: - Local validation, identical to the built-in store's

    static func validateRange(key: [UInt8], rangeEnd: [UInt8]) throws(StoreError) {
        if key.isEmpty { throw .emptyKey }
        if !rangeEnd.isEmpty && rangeEnd != [0] && rangeEnd.lexicographicallyPrecedes(key) { throw .invalidRange }
    }

    static func validatePut(_ request: PutRequest) throws(StoreError) {
        if request.key.isEmpty { throw .emptyKey }
        let size = request.key.count + request.value.count
        if size > maxRequestBytes { throw .requestTooLarge(size: size, limit: maxRequestBytes) }
    }
}
