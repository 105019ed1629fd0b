import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import NIOCore
import Store
import Synchronization

/// How a call reaches etcd: endpoint failover, and which failures certainly changed nothing
/// (try the next endpoint) against those that may have applied a write (report, never repeat).
extension EtcdStore {
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
            // etcd's NOSPACE alarm (its --quota-backend-bytes): the same refusal as the built-in store's.
            if message.contains("database space exceeded") { return .noSpace }
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
                target: target, transportSecurity: secure ? configuration.tls : .plaintext,
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
