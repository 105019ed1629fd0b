import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import NIOCore
import Store

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
        /// Answer HTTP/2 PINGs ahead of swift-nio-http2 (`HTTP2PingResponder`), so grpc-go
        /// clients are not disconnected every 200 calls. Turned off only by the test that shows
        /// the problem it solves.
        public var answerPingsAheadOfHTTP2 = true

        public init() {}
    }

    /// Counters, for tests and metrics.
    public struct Statistics: Sendable, Hashable {
        /// TCP connections accepted.
        public var connectionsAccepted: Int
        /// HTTP/2 PINGs answered by `HTTP2PingResponder`.
        public var pingsAnswered: Int
    }

    private let core: ServerCore
    private let transport: HTTP2ServerTransport.Posix
    private let server: StoppableGRPCServer<MethodLoggingTransport<HTTP2ServerTransport.Posix>>
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
        let address: GRPCNIOTransportCore.SocketAddress = if listen.host.contains(":") {
            .ipv6(host: listen.host, port: listen.port)
        } else {
            .ipv4(host: listen.host == "localhost" ? "127.0.0.1" : listen.host, port: listen.port)
        }
        let (connections, pings) = (self.connections, self.pings)
        let tracker = ConnectionTracker()
        transport = HTTP2ServerTransport.Posix(
            address: address, transportSecurity: .plaintext,
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = configuration.maxRequestPayloadSize
                // etcdctl sends keepalive PINGs every 2 s on idle connections; with the responder
                // off they reach gRPC's ping policy, which must not count them as abuse.
                config.connection.keepalive.clientBehavior = .init(minPingIntervalWithoutCalls: .seconds(1),
                                                                   allowWithoutCalls: true)
                let answerPings = configuration.answerPingsAheadOfHTTP2
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                    connections.increment()
                    guard answerPings else { return channel.eventLoop.makeSucceededVoidFuture() }
                    return channel.eventLoop.makeCompletedFuture {
                        // First in the pipeline: it must see the bytes before the HTTP/2 handler.
                        try channel.pipeline.syncOperations.addHandler(
                            HTTP2PingResponder(side: .server, counter: pings), position: .first)
                    }
                }
                tracker.install(on: &config)
            })
        let services: [any RegistrableRPCService] = [
            KVService(core: core), WatchService(core: core), LeaseService(core: core),
            ClusterService(core: core), MaintenanceService(core: core),
        ]
        var router = RPCRouter<MethodLoggingTransport<HTTP2ServerTransport.Posix>>()
        for service in services { service.registerMethods(with: &router) }
        let wrapped = MethodLoggingTransport(wrapped: transport, known: Set(router.methods.map(\.fullyQualifiedMethod)),
                                             logger: logger)
        server = StoppableGRPCServer(server: GRPCServer(transport: wrapped, router: router), tracker: tracker)
    }

    /// Serves until the calling task is cancelled (or the port cannot be bound, which throws).
    public func run() async throws {
        core.logger.info("etcd API starting")
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Returns (after closing every connection) when cancelled: the normal way to stop.
                try await self.server.run()
            }
            group.addTask { await self.refreshTerm() }
            group.addTask { await self.notifyProgress() }
        }
    }

    /// The port the server listens on, once it does (useful with port 0). Call while `run` runs.
    public var listeningPort: Int {
        get async throws {
            let address = try await transport.listeningAddress
            if let ipv4 = address.ipv4 { return ipv4.port }
            if let ipv6 = address.ipv6 { return ipv6.port }
            throw EtcdAPIError.internalError(reason: "not listening on an IP address: \(address)")
        }
    }

    /// Counters since creation.
    public var statistics: Statistics {
        Statistics(connectionsAccepted: connections.value, pingsAnswered: pings.value)
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
