import GRPCCore
import GRPCServing
import Logging
import NIOCore
import Store
import SwiftProtobuf

/// Serves etcd's v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) from a `ClusterStore`, so
/// etcdctl and other etcd v3 clients work against the masters. Each master runs one, over its own
/// replica of the built-in store (port 2379 by default).
///
/// ```swift
/// let info = RaftClusterInfo(store: store, memberID: id, members: members, databasePath: path)
/// let server = EtcdAPIServer(store: store, info: info, listen: ("0.0.0.0", 2379), logger: logger)
/// try await server.run()   // until the task is cancelled
/// ```
public final class EtcdAPIServer: Sendable {
    /// Tunables.
    public struct Configuration: Sendable {
        /// How often watches that asked for `progress_notify` get a progress notification when
        /// they had no events (etcd's `--experimental-watch-progress-notify-interval`, 10 min).
        public var progressNotifyInterval: Duration = .seconds(600)
        /// Shorter lease TTLs are raised to this, as etcd raises them to its minimum.
        public var minLeaseTTL: Int64 = 2
        /// The largest request accepted by the transport: etcd's 1.5 MiB request limit plus its
        /// 512 KiB allowance for gRPC overhead. Bigger puts are refused by the store with
        /// "request is too large" when they fit here.
        public var maxRequestPayloadSize: Int = Store.maxRequestBytes + 512 * 1024
        /// How often the Raft term shown in response headers is refreshed.
        public var termRefreshInterval: Duration = .milliseconds(500)
        /// Most bytes of events one watch stream queues for a client that reads slower than the
        /// cluster changes; past it the stream's watches pause and then catch up from history
        /// (`WatchSession.relay`), so a slow client costs a member bounded memory.
        public var watchBacklogBytes = 16 << 20
        /// Watches one stream may have open; a create beyond it is answered created-and-canceled
        /// with "too many watches". clientv3 puts all of a client's watches on one stream.
        public var maxWatchesPerStream = 4096
        /// Watches open on this member over all streams. Each may hold `watchBacklogBytes` for a
        /// slow client and costs a store watch per event, so the total is bounded too.
        public var maxWatches = 16_384
        /// Connections served at once (`DirectHTTP2ServerTransport.Configuration.maxConnections`);
        /// more are closed as they are accepted.
        public var maxConnections = 1024
        /// Streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS): clientv3 multiplexes every
        /// call of a client on one connection, so this stays high.
        public var maxConcurrentStreams = 1024
        /// Answer HTTP/2 PINGs ahead of swift-nio-http2 (`HTTP2PingResponder`), so grpc-go
        /// clients are not disconnected every 200 calls. Turned off only by the test that shows
        /// the problem it solves.
        public var answerPingsAheadOfHTTP2 = true
        /// Mutual TLS: clients must present a certificate from the cluster CA, as etcd's
        /// `--client-cert-auth` requires (etcdctl `--cacert --cert --key`). Nil: plain text.
        public var security: ConnectionSecurity?

        public init() {}
    }

    /// Counters, for tests and metrics.
    public struct Statistics: Sendable, Hashable {
        /// TCP connections accepted.
        public var connectionsAccepted: Int
        /// HTTP/2 PINGs answered by `HTTP2PingResponder`.
        public var pingsAnswered: Int
        /// Watches open now over all streams, and creates refused by a watch limit.
        public var openWatches: Int
        public var refusedWatches: Int
        /// The transport's limits: connections refused, streams reset, bytes held.
        public var transport: DirectHTTP2ServerTransport.Statistics
    }

    private let core: ServerCore
    private let transport: DirectHTTP2ServerTransport
    private let server: GRPCServer<MethodLoggingTransport<DirectHTTP2ServerTransport>>
    private let connections = SharedCounter()
    private let pings = SharedCounter()

    /// - Parameters:
    ///   - store: the store to serve (the master's `RaftStore` replica).
    ///   - info: members, leader and Raft state, which only the master knows.
    ///   - listen: an IPv4 or IPv6 literal, or `localhost`; port 0 picks a free port
    ///     (`listeningPort`).
    ///   - logger: where unknown methods and failures are reported.
    public init(store: any ClusterStore, info: any EtcdClusterInfo, listen: (host: String, port: Int),
                logger: Logger, configuration: Configuration = Configuration()) {
        core = ServerCore(store: store, info: info, logger: logger, configuration: configuration)
        let (connections, pings) = (self.connections, self.pings)
        // Calls are served straight from HTTP/2 frames (see DirectHTTP2ServerTransport for why:
        // grpc-swift's per-call stream channels cost most of the leader's CPU under small puts).
        var transportConfig = DirectHTTP2ServerTransport.Configuration()
        transportConfig.maxRequestMessageBytes = configuration.maxRequestPayloadSize
        transportConfig.maxConnections = configuration.maxConnections
        transportConfig.maxConcurrentStreams = configuration.maxConcurrentStreams
        let answerPings = configuration.answerPingsAheadOfHTTP2
        transportConfig.connectionInitializer = { channel in
            connections.increment()
            // Right before the HTTP/2 handler (after TLS, when there is TLS): it must see the
            // HTTP/2 bytes first.
            if answerPings {
                try channel.pipeline.syncOperations.addHandler(HTTP2PingResponder(side: .server, counter: pings))
            }
        }
        if let security = configuration.security { transportConfig.secure(with: security) }
        transportConfig.unaryMethods = Self.fastKVMethods(KVService(core: core))
        transport = DirectHTTP2ServerTransport(host: listen.host == "localhost" ? "127.0.0.1" : listen.host,
                                               port: listen.port, configuration: transportConfig)
        let services: [any RegistrableRPCService] = [
            KVService(core: core), WatchService(core: core), LeaseService(core: core),
            ClusterService(core: core), MaintenanceService(core: core),
        ]
        var router = RPCRouter<MethodLoggingTransport<DirectHTTP2ServerTransport>>()
        for service in services { service.registerMethods(with: &router) }
        let wrapped = MethodLoggingTransport(wrapped: transport, known: Set(router.methods.map(\.fullyQualifiedMethod)),
                                             logger: logger)
        server = GRPCServer(transport: wrapped, router: router)
    }

    /// The KV calls, which carry nearly all of an etcd client's load, served by the transport
    /// directly (see `DirectHTTP2ServerTransport.Configuration.unaryMethods`): the same service
    /// code, without grpc-swift's router and executor around each call.
    private static func fastKVMethods(_ kv: KVService) -> [String: GRPCUnaryMethod] {
        func method<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ call: @escaping @Sendable (Request, ServerContext) async throws -> Response
        ) -> GRPCUnaryMethod {
            GRPCUnaryMethod { bytes, context in
                let request: Request
                do {
                    request = try Request(serializedBytes: bytes)
                } catch {
                    throw RPCError(code: .invalidArgument, message: "cannot decode the request as \(Request.protoMessageName): \(error)")
                }
                return try await call(request, context).serializedBytes()
            }
        }
        return [
            "/etcdserverpb.KV/Range": method(kv.range(request:context:)),
            "/etcdserverpb.KV/Put": method(kv.put(request:context:)),
            "/etcdserverpb.KV/DeleteRange": method(kv.deleteRange(request:context:)),
            "/etcdserverpb.KV/Txn": method(kv.txn(request:context:)),
            "/etcdserverpb.KV/Compact": method(kv.compact(request:context:)),
        ]
    }

    /// Serves until the calling task is cancelled (or the port cannot be bound, which throws).
    public func run() async throws {
        core.logger.info("etcd API starting")
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Returns when cancelled, after GOAWAY, a short grace and closing every connection.
                try await self.server.serve()
            }
            group.addTask { await self.refreshTerm() }
            group.addTask { await self.notifyProgress() }
        }
    }

    /// The port the server listens on, once it does (useful with port 0). Call while `run` runs.
    public var listeningPort: Int {
        get async throws { try await transport.listeningPort }
    }

    /// Counters since creation.
    public var statistics: Statistics {
        Statistics(connectionsAccepted: connections.value, pingsAnswered: pings.value,
                   openWatches: core.openWatches.load(ordering: .relaxed),
                   refusedWatches: core.refusedWatches.load(ordering: .relaxed),
                   transport: transport.statistics)
    }

    /// Keeps the Raft term in response headers fresh, until cancelled.
    private func refreshTerm() async {
        while !Task.isCancelled {
            await core.refreshTerm()
            try? await Task.sleep(for: core.configuration.termRefreshInterval)
        }
    }

    /// Asks the store for progress notifications every interval while some watch wants them
    /// (each watch forwards one only if it had no events since the last), until cancelled.
    private func notifyProgress() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: core.configuration.progressNotifyInterval)
            if core.progressWatches.load(ordering: .relaxed) > 0 { core.requestWatchProgress() }
        }
    }
}

/// Passes every stream to the server, first logging calls of methods no service implements:
/// grpc-swift answers those with a bare "unimplemented" that names no method, and an etcd client
/// calling something we lack should be visible in the master's log.
struct MethodLoggingTransport<Wrapped: ServerTransport>: ServerTransport {
    typealias Bytes = Wrapped.Bytes

    let wrapped: Wrapped
    let known: Set<String>
    let logger: Logger

    func configure(context: GRPCServerContext) {
        wrapped.configure(context: context)
    }

    func listen(
        streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
    ) async throws {
        try await wrapped.listen { stream, context in
            let method = stream.descriptor.fullyQualifiedMethod
            if !known.contains(method) {
                logger.warning("etcd API: call of an unknown method", metadata: ["method": "\(method)"])
            }
            await streamHandler(stream, context)
        }
    }

    func beginGracefulShutdown() {
        wrapped.beginGracefulShutdown()
    }
}
