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

    // MARK: - Calls

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

    /// What to do after a call to one endpoint failed.
    enum Disposition: Equatable {
        /// It certainly changed nothing, or it was a read: try the next endpoint.
        case tryNext
        /// A write that etcd may have applied: report it, do not repeat it.
        case indeterminate
        /// etcd answered with a refusal: report it.
        case refused
    }

    /// Runs `body` against one endpoint after the other, starting with the one that answered
    /// last, until one answers.
    func call<Response: Sendable>(write: Bool, context: ErrorContext,
                                  _ body: @Sendable (Connection, CallOptions) async throws -> Response) async throws -> Response {
        var options = CallOptions.defaults
        options.timeout = configuration.requestTimeout
        // Fail at once on an endpoint that is down rather than wait for it to come back: the next
        // endpoint may be up.
        options.waitForReady = false
        options.maxResponseMessageBytes = configuration.maxResponseBytes
        var attempts: [String] = []
        let first = preferred.withLock { $0 }
        for offset in 0..<connections.count {
            try Task.checkCancellation()
            let index = (first + offset) % connections.count
            let connection = connections[index]
            let mark = StreamMark()
            do {
                let response = try await StreamMark.$current.withValue(mark) { try await body(connection, options) }
                if offset != 0 { preferred.withLock { $0 = index } }
                return response
            } catch {
                if Task.isCancelled { throw CancellationError() }
                let rpc = error as? RPCError
                let message = rpc?.message ?? "\(error)"
                if rpc != nil, let storeError = context.storeError(for: message) {
                    if offset != 0 { preferred.withLock { $0 = index } }
                    throw await completed(storeError)
                }
                switch Self.disposition(code: rpc?.code, message: message, write: write, sent: mark.opened) {
                case .tryNext:
                    attempts.append("\(connection.url): \(rpc.map { "\($0.code): \($0.message)" } ?? "\(error)")")
                    logger.debug("etcd endpoint failed, trying the next", metadata: ["endpoint": "\(connection.url)", "error": "\(error)"])
                case .indeterminate:
                    throw EtcdStoreError.indeterminate(endpoint: connection.url, reason: "\(error)")
                case .refused:
                    throw EtcdStoreError.server(grpcCode: rpc?.code.rawValue ?? -1, message: message)
                }
            }
        }
        throw EtcdStoreError.unavailable(attempts: attempts)
    }

    /// Whether a failed call may go to the next endpoint. `code` is nil for an error that is not a
    /// gRPC status (a transport failure grpc-swift did not wrap); `sent` says whether grpc-swift
    /// had opened the call's stream, after which its request may have reached etcd.
    static func disposition(code: RPCError.Code?, message: String, write: Bool, sent: Bool) -> Disposition {
        // Any other code is a definite answer (invalid argument, failed precondition, permission
        // denied, ...): the same request would be refused anywhere.
        let transient = code.map(transientCodes.contains) ?? true
        guard transient else { return .refused }
        if !write || !sent || notProposed(message) { return .tryNext }
        return .indeterminate
    }

    /// The gRPC codes of failures that another endpoint, or a later attempt, may not have.
    static let transientCodes: Set<RPCError.Code> = [
        .unavailable, .deadlineExceeded, .cancelled, .unknown, .internalError, .resourceExhausted, .aborted,
    ]

    /// etcd's messages for writes it refused before proposing them to Raft.
    static func notProposed(_ message: String) -> Bool {
        message.contains("no leader") || message.contains("not capable") || message.contains("server stopped")
            || message.contains("too many requests")
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
}

extension EtcdStore {
    /// One endpoint: a grpc-swift client with its own HTTP/2 connection.
    struct Connection: Sendable {
        /// `http://host:port`, as the store was given it.
        let url: String
        let client: GRPCClient<HTTP2ClientTransport.Posix>

        init(url: String, configuration: EtcdStore.Configuration) throws {
            self.url = url
            let secure = url.hasPrefix("https://")
            let authority = url.dropFirst(secure ? "https://".count : "http://".count)
            let target = try Self.target(String(authority), original: url)
            let transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: secure ? .tls : .plaintext,
                config: .defaults { config in
                    config.backoff.initial = .milliseconds(100)
                    config.backoff.max = configuration.maxReconnectBackoff
                    // Notices an etcd that vanished without closing the connection (a partition)
                    // while a watch waits on it. etcd refuses pings more often than every 5 s and
                    // on connections without calls (its keepalive enforcement policy).
                    config.connection.keepalive = .init(time: .seconds(30), timeout: .seconds(10), allowWithoutCalls: false)
                    config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(HTTP2PingResponder(side: .client), position: .first)
                        }
                    }
                })
            client = GRPCClient(transport: transport, interceptors: [StreamOpenedInterceptor()])
        }

        var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
        var lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
        var watch: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }

        /// The address to resolve for `host:port` (etcd's client port, 2379, when no port is given).
        static func target(_ authority: String, original: String) throws(EtcdStoreError) -> any ResolvableTarget {
            var host = authority
            var port = 2379
            if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
                guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else {
                    throw .invalidEndpoint(original)
                }
                host = String(authority[..<colon])
                port = parsed
            }
            if host.hasPrefix("[") && host.hasSuffix("]") {
                return ResolvableTargets.IPv6.ipv6(address: String(host.dropFirst().dropLast()), port: port)
            }
            guard !host.isEmpty, !host.contains("/") else { throw .invalidEndpoint(original) }
            let isIPv4 = host.split(separator: ".", omittingEmptySubsequences: false).count == 4
                && host.allSatisfy { $0.isNumber || $0 == "." }
            if isIPv4 { return ResolvableTargets.IPv4.ipv4(address: host, port: port) }
            return ResolvableTargets.DNS.dns(host: host, port: port)
        }
    }

    /// Whether grpc-swift opened the stream of the call running in this task. Set by
    /// `StreamOpenedInterceptor`, which grpc-swift runs only once it has a stream for the call: a
    /// call that fails before then (no connection) cannot have sent anything, so even a write may
    /// go to the next endpoint.
    final class StreamMark: Sendable {
        @TaskLocal static var current: StreamMark?
        private let flag = Atomic<Bool>(false)

        var opened: Bool { flag.load(ordering: .acquiring) }

        func markOpened() { flag.store(true, ordering: .releasing) }
    }

    /// Marks the current call's `StreamMark` as opened (see there).
    struct StreamOpenedInterceptor: ClientInterceptor {
        func intercept<Input: Sendable, Output: Sendable>(
            request: StreamingClientRequest<Input>,
            context: ClientContext,
            next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
        ) async throws -> StreamingClientResponse<Output> {
            StreamMark.current?.markOpened()
            return try await next(request, context)
        }
    }
}
