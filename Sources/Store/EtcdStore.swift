import AsyncHTTPClient
import Logging
import NIOCore
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an `EtcdStore` call failed when etcd did not refuse it with one of `StoreError`'s reasons.
public enum EtcdStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No endpoint could serve the request; one line per attempt says why.
    case unavailable(attempts: [String])
    /// The connection broke after a write had been sent: etcd may or may not have applied it, so
    /// it was not retried on another endpoint (a txn retried blindly could report the wrong branch).
    case indeterminate(endpoint: String, reason: String)
    /// etcd refused the request for a reason `StoreError` has no case for.
    case server(httpStatus: Int, grpcCode: Int?, message: String)
    /// etcd's answer could not be decoded.
    case badResponse(String)
    /// etcd canceled the watch for a reason other than compaction.
    case watchCanceled(String)
    /// An endpoint is not an `http://host:port` URL.
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case .unavailable(let attempts): "no etcd endpoint answered: \(attempts.joined(separator: "; "))"
        case .indeterminate(let endpoint, let reason): "the connection to \(endpoint) broke after a write was sent, it may or may not have been applied: \(reason)"
        case .server(let status, let code, let message): "etcd refused the request (HTTP \(status), gRPC code \(code.map(String.init) ?? "-")): \(message)"
        case .badResponse(let why): "unexpected answer from etcd: \(why)"
        case .watchCanceled(let why): "etcd canceled the watch: \(why)"
        case .invalidEndpoint(let endpoint): "invalid etcd endpoint \(endpoint): expected http://host:port"
        }
    }
}

/// A `ClusterStore` backed by an external etcd v3 cluster (`--store=etcd`), spoken to through
/// etcd's HTTP/JSON gateway (`/v3/kv/...`, `/v3/lease/...`, `/v3/watch`).
///
/// Not gRPC: grpc-swift closes connections to grpc-go peers after ~200 calls (see "Known pitfalls"
/// in DESIGN.md), while the gateway is plain HTTP/1.1 and served by every etcd 3.4+ on its client
/// port.
///
/// Requests go to the endpoint that last answered; on a connection failure or a 5xx the next one is
/// tried. Reads are retried on any transport error; writes only when they cannot have reached etcd
/// (connection refused, connect timeout) or etcd said it did not propose them ("no leader"), so a
/// write is never applied twice. Input that the built-in store refuses is refused here before it is
/// sent (empty keys, inverted ranges, oversized puts, invalid TTLs), with the same `StoreError`, so
/// the two stores cannot be told apart; etcd's own refusals map to `StoreError` too.
///
/// Call `shutdown()` when done: it closes the connections this store owns.
public final class EtcdStore: ClusterStore {
    /// Tuning; the defaults suit a LAN etcd cluster.
    public struct Configuration: Sendable {
        /// Time for one unary request to one endpoint, connection included, before the next is tried.
        public var requestTimeout: Duration = .seconds(10)
        /// Time to establish a connection to one endpoint before it counts as down.
        public var connectTimeout: Duration = .seconds(2)
        /// Connections kept per endpoint. Each open watch holds one for as long as it runs, so this
        /// must exceed the number of concurrent watches plus request concurrency.
        public var maxConnectionsPerEndpoint: Int = 256
        /// Ask etcd for periodic progress notifications on watches (empty `WatchResponse`s that
        /// say "everything up to this revision was delivered").
        public var watchProgressNotify: Bool = true
        /// How many times in a row a watch may fail to reach any endpoint before its stream fails.
        public var watchReconnectAttempts: Int = 10
        /// The largest answer accepted (a range over many large values).
        public var maxResponseBytes: Int = 256 * 1024 * 1024

        public init() {}
    }

    /// Base URLs (`http://host:port`, no trailing slash).
    public let endpoints: [String]
    let configuration: Configuration
    let client: HTTPClient
    let logger: Logger
    /// The endpoint that answered last: where the next request starts.
    let preferred = Mutex<Int>(0)

    /// - Parameter endpoints: etcd client URLs, e.g. `["http://etcd1:2379", "http://etcd2:2379"]`;
    ///   a bare `host:port` means `http://host:port`.
    public init(endpoints: [String], configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "orchestrator.store.etcd")) throws {
        guard !endpoints.isEmpty else { throw EtcdStoreError.invalidEndpoint("(none given)") }
        self.endpoints = try endpoints.map(Self.normalize)
        self.configuration = configuration
        self.logger = logger
        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: configuration.connectTimeout.timeAmount, read: nil)
        // Failover is ours: AsyncHTTPClient's own retry would hold a request on a dead endpoint
        // for the whole connect timeout, several times over.
        http.connectionPool.retryConnectionEstablishment = false
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = configuration.maxConnectionsPerEndpoint
        http.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http,
                            backgroundActivityLogger: logger)
    }

    /// Closes every connection; the store must not be used afterwards.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    static func normalize(_ endpoint: String) throws -> String {
        var url = String(endpoint.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        if !url.contains("://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > "https://".count else {
            throw EtcdStoreError.invalidEndpoint(endpoint)
        }
        return url
    }

    // MARK: - KV

    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        try Self.validateRange(key: request.key, rangeEnd: request.rangeEnd)
        let body = EtcdRangeRequestJSON(request, serializable: consistency == .serializable)
        let reply: EtcdRangeResponseJSON = try await call("/v3/kv/range", body, write: false,
                                                          context: .init(revision: request.revision))
        return reply.model()
    }

    public func put(_ request: PutRequest) async throws -> PutResponse {
        try Self.validatePut(request)
        let reply: EtcdPutResponseJSON = try await call("/v3/kv/put", EtcdPutRequestJSON(request), write: true,
                                                        context: .init(lease: request.lease))
        return reply.model()
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse {
        try Self.validateRange(key: request.key, rangeEnd: request.rangeEnd)
        let reply: EtcdDeleteRangeResponseJSON = try await call("/v3/kv/deleterange", EtcdDeleteRangeRequestJSON(request),
                                                                write: true, context: .init())
        return reply.model()
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
        let reply: EtcdTxnResponseJSON = try await call("/v3/kv/txn", EtcdTxnRequestJSON(request), write: true, context: context)
        return try reply.model()
    }

    public func compact(revision: Int64) async throws {
        let _: EtcdHeaderOnlyJSON = try await call("/v3/kv/compaction", EtcdCompactionRequestJSON(revision: EtcdInt64(revision), physical: true),
                                                  write: true, context: .init(revision: revision))
    }

    // MARK: - Leases

    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant {
        // etcd raises a TTL below its minimum (about 2 s) instead of refusing it; the built-in store
        // refuses non-positive TTLs, so refuse them here too.
        if ttl <= 0 || ttl > maxLeaseTTL { throw StoreError.invalidTTL(ttl) }
        let reply: EtcdLeaseGrantResponseJSON = try await call("/v3/lease/grant",
                                                               EtcdLeaseGrantRequestJSON(TTL: EtcdInt64(ttl), ID: id.nonZero),
                                                               write: true, context: .init(lease: id, ttl: ttl))
        if let error = reply.error, !error.isEmpty {
            throw ErrorContext(lease: id, ttl: ttl).storeError(for: error) ?? EtcdStoreError.server(httpStatus: 200, grpcCode: nil, message: error)
        }
        return LeaseGrant(id: reply.ID?.value ?? 0, ttl: reply.TTL?.value ?? 0)
    }

    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant {
        // LeaseKeepAlive is a bidirectional stream; through the gateway one request yields one
        // `{"result": ...}` line. A keep-alive changes only the lease's deadline, so repeating it on
        // another endpoint is harmless: it counts as a read for failover.
        let reply: EtcdStreamMessageJSON<EtcdLeaseKeepAliveResponseJSON> =
            try await call("/v3/lease/keepalive", EtcdLeaseIDRequestJSON(ID: EtcdInt64(id)), write: false, context: .init(lease: id))
        if let error = reply.error {
            let message = error.message ?? "keep-alive failed"
            throw ErrorContext(lease: id).storeError(for: message) ?? EtcdStoreError.server(httpStatus: 200, grpcCode: error.code, message: message)
        }
        // etcd answers a keep-alive of an unknown or expired lease with TTL 0 rather than an error
        // (clientv3 turns that into ErrLeaseNotFound, as we do).
        guard let result = reply.result, let ttl = result.TTL?.value, ttl > 0 else { throw StoreError.leaseNotFound(id) }
        return LeaseGrant(id: result.ID?.value ?? id, ttl: ttl)
    }

    public func revokeLease(_ id: LeaseID) async throws {
        let _: EtcdHeaderOnlyJSON = try await call("/v3/lease/revoke", EtcdLeaseIDRequestJSON(ID: EtcdInt64(id)), write: true,
                                                  context: .init(lease: id))
    }

    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus {
        let reply: EtcdLeaseTimeToLiveResponseJSON = try await call("/v3/lease/timetolive",
                                                                    EtcdLeaseTimeToLiveRequestJSON(ID: EtcdInt64(id), keys: true),
                                                                    write: false, context: .init(lease: id))
        // An unknown lease comes back as TTL -1, not as an error.
        guard let ttl = reply.TTL?.value, ttl >= 0 else { throw StoreError.leaseNotFound(id) }
        let keys = (reply.keys ?? []).map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) }
        return LeaseStatus(id: reply.ID?.value ?? id, ttl: ttl, grantedTTL: reply.grantedTTL?.value ?? 0, keys: keys)
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

    // MARK: - Transport

    /// What a request was about, to turn etcd's error text into the right `StoreError`.
    struct ErrorContext {
        var revision: Int64 = 0
        var lease: LeaseID = 0
        var ttl: Int64 = 0

        /// The `StoreError` for etcd's message, or nil when it has none. `.compacted` and
        /// `.futureRevision` carry revisions etcd's message leaves out: `EtcdStore.call` fills them in.
        func storeError(for message: String) -> StoreError? {
            if message.contains("required revision has been compacted") { return .compacted(0) }
            if message.contains("required revision is a future revision") { return .futureRevision(requested: revision, current: 0) }
            if message.contains("requested lease not found") { return .leaseNotFound(lease) }
            if message.contains("lease already exists") { return .leaseExists(lease) }
            if message.contains("too large lease TTL") { return .invalidTTL(ttl) }
            if message.contains("key is not provided") { return .emptyKey }
            if message.contains("duplicate key given in txn request") { return .duplicateKey }
            if message.contains("request is too large") { return .requestTooLarge(size: 0, limit: maxRequestBytes) }
            return nil
        }
    }

    /// POSTs `body` to `path`, failing over across endpoints, and decodes the answer.
    func call<Response: Decodable>(_ path: String, _ body: some Encodable, write: Bool, context: ErrorContext) async throws -> Response {
        let payload: [UInt8]
        do { payload = Array(try JSONEncoder().encode(body)) } catch { throw EtcdStoreError.badResponse("cannot encode request: \(error)") }
        var attempts: [String] = []
        let first = preferred.withLock { $0 }
        for offset in 0..<endpoints.count {
            try Task.checkCancellation()
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            let status: Int
            let reply: [UInt8]
            do {
                (status, reply) = try await post(endpoint + path, payload)
            } catch {
                if error is CancellationError { throw error }
                if !write || Self.neverSent(error) {
                    attempts.append("\(endpoint): \(error)")
                    logger.debug("etcd endpoint failed, trying the next", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
                    continue
                }
                throw EtcdStoreError.indeterminate(endpoint: endpoint, reason: "\(error)")
            }
            if status == 200 {
                preferred.withLock { $0 = index }
                do {
                    return try JSONDecoder().decode(Response.self, from: Data(reply))
                } catch {
                    throw EtcdStoreError.badResponse("\(path): \(error): \(String(decoding: reply.prefix(500), as: UTF8.self))")
                }
            }
            let decoded = try? JSONDecoder().decode(EtcdErrorJSON.self, from: Data(reply))
            let message = decoded?.message ?? String(decoding: reply.prefix(500), as: UTF8.self)
            if let storeError = context.storeError(for: message) {
                preferred.withLock { $0 = index }
                throw await completed(storeError)
            }
            // 5xx: the member cannot serve right now (no leader, stopping, overloaded). A read may go
            // anywhere; a write only when etcd says it was not proposed.
            if status >= 500 && (!write || Self.notProposed(message)) {
                attempts.append("\(endpoint): HTTP \(status): \(message)")
                continue
            }
            throw EtcdStoreError.server(httpStatus: status, grpcCode: decoded?.code, message: message)
        }
        throw EtcdStoreError.unavailable(attempts: attempts)
    }

    /// One POST to one endpoint: the status and the whole body.
    func post(_ url: String, _ payload: [UInt8]) async throws -> (Int, [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: payload))
        let response = try await client.execute(request, timeout: configuration.requestTimeout.timeAmount, logger: logger)
        let body = try await response.body.collect(upTo: configuration.maxResponseBytes)
        return (Int(response.status.code), Array(body.readableBytesView))
    }

    /// etcd's compacted and future-revision errors do not say which revisions are involved, while
    /// `StoreError` does (and the built-in store reports them): look them up.
    func completed(_ error: StoreError) async -> StoreError {
        switch error {
        case .compacted:
            return .compacted((try? await compactedRevision()) ?? 0)
        case .futureRevision(let requested, _):
            let current = try? await range(RangeRequest(key: [0], countOnly: true), consistency: .linearizable).revision
            return .futureRevision(requested: requested, current: current ?? 0)
        default:
            return error
        }
    }

    /// The store's compacted revision. etcd reports it only when a watch starts below it, so start
    /// one at revision 1 (called only after etcd said something was compacted, so it is above 1).
    func compactedRevision() async throws -> Int64 {
        let timeout = configuration.requestTimeout
        return try await withThrowingTaskGroup(of: Int64?.self) { group in
            group.addTask {
                do {
                    for try await _ in self.watch(key: [0], rangeEnd: [], fromRevision: 1, prevKV: false, progressNotify: false) {}
                } catch StoreError.compacted(let revision) {
                    return revision
                }
                return nil
            }
            // Nothing compacted after all (etcd's error and this watch raced a restore): give up
            // rather than wait for an event that will never cancel the watch.
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            guard let revision = first else { throw EtcdStoreError.badResponse("etcd did not report its compacted revision") }
            return revision
        }
    }

    /// Whether the request failed before any byte of it can have reached etcd.
    static func neverSent(_ error: any Error) -> Bool {
        if let e = error as? HTTPClientError, e == .connectTimeout { return true }
        if let e = error as? ChannelError, case .connectTimeout = e { return true }
        if let e = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL].contains(e.errnoCode) { return true }
        // NIOPosix's aggregate of failed connection attempts, named so as not to depend on NIOPosix.
        return String(reflecting: type(of: error)).hasSuffix("NIOConnectionError")
    }

    /// etcd's messages for writes it refused before proposing them to Raft.
    static func notProposed(_ message: String) -> Bool {
        message.contains("no leader") || message.contains("not capable") || message.contains("server stopped")
            || message.contains("too many requests")
    }
}

/// An answer whose only content is the header (compaction, lease revoke).
struct EtcdHeaderOnlyJSON: Decodable {
    var header: EtcdHeaderJSON?
}

extension Duration {
    /// The same span as NIO's `TimeAmount`.
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
