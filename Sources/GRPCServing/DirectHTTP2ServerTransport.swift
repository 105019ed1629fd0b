import GRPCCore
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// A gRPC server transport that serves calls straight from a connection's HTTP/2 frames.
///
/// Why not grpc-swift's `HTTP2ServerTransport.Posix`: it gives every call a child channel with its
/// own pipeline, an async channel with producer and writer state machines, and several hops
/// between the event loop and tasks. For the etcd API, where each call is a small unary request,
/// that per-call machinery was about two thirds of the leader's CPU (perf of `etcd-bench` puts at 64
/// clients), and the reason our puts ran at 0.6x etcd's. Here one handler per connection
/// (`GRPCFrameHandler`) keeps a table of open streams, reassembles length-prefixed messages from
/// DATA frames, and hands each call to the server's router as an `RPCStream` whose inbound side is
/// an async sequence and whose outbound writes are batched into one event-loop hop and one flush.
/// Services, interceptors, deadlines (`grpc-timeout`) and status handling stay grpc-swift's.
///
/// Flow control: swift-nio-http2 enforces the windows we advertise and buffers our outbound DATA
/// beyond the peer's window; we re-open the connection window as data arrives and a stream's
/// window as the service consumes its messages, so a client can never have more than one window
/// of unread messages buffered per stream.
///
/// Limits, so that a flood of connections, streams or partial messages keeps memory bounded
/// before any authentication: at most `maxConnections` connections (more are closed as they are
/// accepted), `maxConcurrentStreams` streams each (swift-nio-http2 refuses more), one partial
/// message of at most `maxRequestMessageBytes` per stream (larger is refused at its length
/// prefix), at most `maxBufferedBytesPerConnection` of partial messages per connection and
/// `maxBufferedBytes` of large partial messages (over 1 MiB) on the whole server. What happens when
/// one is reached:
/// - a stream's own limit, or the server's budget (which other connections may hold): the call
///   ends with RESOURCE_EXHAUSTED and the stream is reset; the connection carries on.
/// - the connection's budget: GOAWAY with ENHANCE_YOUR_CALM and the connection closes, since it
///   is that client alone which holds too much at once.
/// ``statistics`` counts each of them.
///
/// Stopping never crashes on open connections (no async channel can be deinited unfinished):
/// cancelling `listen` closes the listener, sends GOAWAY on every connection, lets calls in flight
/// end for `gracePeriod`, then closes what remains.
public final class DirectHTTP2ServerTransport: ServerTransport, Sendable {
    public typealias Bytes = [UInt8]

    /// Tunables.
    public struct Configuration: Sendable {
        /// Requests with a larger message are refused with `resourceExhausted`.
        public var maxRequestMessageBytes = 4 * 1024 * 1024
        /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients; swift-nio-http2 refuses streams
        /// beyond it. Each stream may hold up to one stream window of request bytes.
        public var maxConcurrentStreams = 1024
        /// Open connections; one accepted beyond it is closed at once (and counted in
        /// `Statistics.refusedConnections`).
        public var maxConnections = 1024
        /// Bytes of partially received request messages one connection may hold, over all its
        /// streams; beyond it the connection gets GOAWAY (ENHANCE_YOUR_CALM) and is closed. At
        /// least `maxRequestMessageBytes` + 5, or a largest message could never arrive.
        public var maxBufferedBytesPerConnection = 64 << 20
        /// Bytes of large partial request messages (over 1 MiB each) the whole server may hold;
        /// the stream whose message would pass it ends with RESOURCE_EXHAUSTED. Only large messages
        /// count, so the small ones that make a server's load cost no shared counter.
        public var maxBufferedBytes = 256 << 20
        /// Resolves each connection's authenticated identity (say, the peer certificate of a TLS
        /// handshake that `connectionInitializer` set up) once, before its first call is dispatched:
        /// frames that arrive meanwhile wait. The value is every call's
        /// `ServerContext.transportSpecific` and is handed to sink methods; a failed future closes
        /// the connection. Nil: no identity, and calls are dispatched at once.
        public var peerIdentity: (@Sendable (any Channel) -> EventLoopFuture<(any ServerContext.TransportSpecific)?>)?
        /// Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE). Larger than the largest
        /// request, so a unary call never waits for a WINDOW_UPDATE.
        public var streamWindowBytes = 8 * 1024 * 1024
        /// The connection's receive window, topped up whenever half of it is used.
        public var connectionWindowBytes = 32 * 1024 * 1024
        /// Bytes of one streaming call's response messages that may wait in the connection (for
        /// the client's flow-control window or the socket) before the service's next `write`
        /// suspends, until half of them are out. Without it a client that reads slower than the
        /// service writes made the server buffer everything.
        public var streamWriteBufferBytes = 1 << 20
        /// How long calls in flight may run on once the transport is stopping.
        public var gracePeriod: Duration = .milliseconds(500)
        /// Unary methods served without grpc-swift's router and executor, by `:path`
        /// (e.g. "/etcdserverpb.KV/Put"): for the calls that dominate a server's load. The
        /// client's deadline (`grpc-timeout`) is enforced here too: DEADLINE_EXCEEDED and the
        /// call's task cancelled when it passes.
        public var unaryMethods: [String: GRPCUnaryMethod] = [:]
        /// Client-streaming methods served on the connection's event loop, by `:path`: each
        /// request message is handed over as it completes, with no task, async sequence or
        /// router per call. For long-lived streams of small messages (Raft's), where that
        /// machinery cost more than the work. A sink's stream window re-opens as bytes arrive
        /// (at most one partial message is buffered), so the sink must keep up: hand over and
        /// return.
        public var sinkMethods: [String: GRPCSinkMethod] = [:]
        /// Runs on each accepted connection's event loop before the HTTP/2 handler is added (it
        /// may add handlers that must see the bytes first); throwing closes the connection.
        public var connectionInitializer: (@Sendable (any Channel) throws -> Void)?

        public init() {}
    }

    private let host: String
    private let port: Int
    private let configuration: Configuration
    private let group: any EventLoopGroup
    private let registry = ConnectionRegistry()

    /// - Parameters:
    ///   - host: an IPv4 or IPv6 literal to listen on.
    ///   - port: 0 picks a free port (see `listeningPort`).
    public init(host: String, port: Int, configuration: Configuration = Configuration(),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.configuration = configuration
        self.group = group
    }

    /// The port the transport listens on, once it does; throws if binding failed.
    public var listeningPort: Int {
        get async throws { try await registry.boundPort() }
    }

    /// Open connections right now (tests).
    public var openConnections: Int { registry.openConnections }

    /// What the limits did so far, for tests and metrics.
    public struct Statistics: Sendable, Hashable {
        /// Connections open now.
        public var openConnections: Int
        /// Connections closed as they were accepted, because `maxConnections` were open.
        public var refusedConnections: Int
        /// Streams ended with RESOURCE_EXHAUSTED by a buffer limit or a sink method's
        /// per-connection limit.
        public var refusedStreams: Int
        /// Connections closed with GOAWAY (ENHANCE_YOUR_CALM) for holding more than
        /// `maxBufferedBytesPerConnection`.
        public var calmedConnections: Int
        /// Bytes of large partial request messages held now (see `maxBufferedBytes`).
        public var bufferedBytes: Int
        /// Streams open now, over all connections: calls in flight and open sinks. A count
        /// that keeps rising under steady load is a leak.
        public var openStreams: Int
    }

    /// Counters since the transport was created; each read is a few atomic loads.
    public var statistics: Statistics {
        let counters = registry.counters
        return Statistics(
            openConnections: registry.openConnections,
            refusedConnections: counters.refusedConnections.load(ordering: .relaxed),
            refusedStreams: counters.refusedStreams.load(ordering: .relaxed),
            calmedConnections: counters.calmedConnections.load(ordering: .relaxed),
            bufferedBytes: counters.bufferedBytes.load(ordering: .relaxed),
            openStreams: counters.openStreams.load(ordering: .relaxed))
    }

    public func listen(
        streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
    ) async throws {
        let (configuration, registry) = (self.configuration, self.registry)
        let settings: HTTP2Settings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: configuration.streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
        ]
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // TCP level: `.socketOption` is SOL_SOCKET, where option 1 is SO_DEBUG (refused to a
            // non-root user, which dropped every inbound connection).
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = GRPCFrameHandler(configuration: configuration, counters: registry.counters,
                                                   streamHandler: streamHandler)
                    try registry.accept(channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop),
                                        limit: configuration.maxConnections)
                    try configuration.connectionInitializer?(channel)
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                    try pipeline.addHandler(handler)
                }
            }
        let server: any Channel
        do {
            server = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            registry.bindFailed(error)
            throw error
        }
        registry.bound(server)
        // Serve until cancelled (or until `beginGracefulShutdown` closes the listener).
        await withTaskCancellationHandler {
            try? await server.closeFuture.get()
        } onCancel: {
            server.close(promise: nil)
        }
        // Stopping: none of these waits may depend on the (cancelled) task, so they use futures.
        registry.drainAll()
        let deadline = NIODeadline.now() + .nanoseconds(configuration.gracePeriod.nanoseconds)
        for channel in registry.channels {
            let closed = channel.closeFuture
            let timeout = channel.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
            try? await closed.get()
            timeout.cancel()
        }
        // A connection accepted while the listener was closing was refused in its initializer.
        for channel in registry.channels { try? await channel.close().get() }
    }

    public func beginGracefulShutdown() {
        registry.closeListener()
    }
}

/// A unary method served straight from the transport: `handle` decodes the request message,
/// runs the call and returns the encoded response; an `RPCError` it throws becomes the call's
/// status (any other error becomes `unknown`).
public struct GRPCUnaryMethod: Sendable {
    public var handle: @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8]

    public init(handle: @escaping @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8]) {
        self.handle = handle
    }
}

/// A client-streaming method served straight from the transport, on the connection's event loop
/// (see `DirectHTTP2ServerTransport.Configuration.sinkMethods`).
public struct GRPCSinkMethod: Sendable {
    /// Opens a call from its request metadata, the client's address (`ipv4:HOST:PORT`) and the
    /// connection's identity (from `Configuration.peerIdentity`, nil without one); an `RPCError`
    /// it throws refuses the call with that status.
    public var open: @Sendable (_ metadata: Metadata, _ remotePeer: String,
                                _ identity: (any ServerContext.TransportSpecific)?) throws -> GRPCSinkCall
    /// Calls of this method one connection may have open at once; more are refused with
    /// RESOURCE_EXHAUSTED before `open` runs. A sink re-opens its window as bytes arrive, so each
    /// call may hold a whole partial message: this bounds how many one client can hold.
    public var maxCallsPerConnection: Int

    public init(maxCallsPerConnection: Int = .max,
                open: @escaping @Sendable (_ metadata: Metadata, _ remotePeer: String,
                                           _ identity: (any ServerContext.TransportSpecific)?) throws -> GRPCSinkCall) {
        self.open = open
        self.maxCallsPerConnection = maxCallsPerConnection
    }
}

/// One open sink call. Its closures run on the connection's event loop and must not block.
public struct GRPCSinkCall: Sendable {
    /// Response messages sent as soon as the call is accepted, after the response headers.
    public var greeting: [[UInt8]]
    /// Each request message, in the order sent.
    public var receive: @Sendable (_ message: [UInt8]) -> Void
    /// Called once when the call ends: `nil` when the client ended its side (the call then ends
    /// with status OK), otherwise why it ended (reset, connection closed, bad framing).
    public var end: @Sendable (_ error: RPCError?) -> Void

    public init(greeting: [[UInt8]] = [], receive: @escaping @Sendable (_ message: [UInt8]) -> Void,
                end: @escaping @Sendable (_ error: RPCError?) -> Void) {
        self.greeting = greeting
        self.receive = receive
        self.end = end
    }
}

/// The transport's counters: atomics touched only on rare events (a refusal, a large message),
/// never per frame of an ordinary call.
final class TransportCounters: Sendable {
    let refusedConnections = Atomic<Int>(0)
    let refusedStreams = Atomic<Int>(0)
    let calmedConnections = Atomic<Int>(0)
    let bufferedBytes = Atomic<Int>(0)
    /// Entries of the connections' stream tables (`GRPCFrameHandler.streams`).
    let openStreams = Atomic<Int>(0)
}

/// The listener and every open connection of one transport.
final class ConnectionRegistry: Sendable {
    let counters = TransportCounters()

    private struct State {
        var listener: (any Channel)?
        var bindResult: Result<Int, any Error>?
        var bindWaiters: [CheckedContinuation<Int, any Error>] = []
        var connections: [ObjectIdentifier: (channel: any Channel, handler: NIOLoopBound<GRPCFrameHandler>)] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    var openConnections: Int { state.withLock { $0.connections.count } }
    var channels: [any Channel] { state.withLock { $0.connections.values.map(\.channel) } }

    struct Refused: Error, CustomStringConvertible {
        var description: String { "the server is shutting down" }
    }

    struct TooManyConnections: Error, CustomStringConvertible {
        var limit: Int
        var description: String { "\(limit) connections are open, the most allowed" }
    }

    /// Records a new connection, or refuses it while the transport stops or when `limit` are open.
    func accept(_ channel: any Channel, handler: NIOLoopBound<GRPCFrameHandler>, limit: Int) throws {
        let id = ObjectIdentifier(channel)
        try state.withLock { state in
            if state.draining { throw Refused() }
            if state.connections.count >= limit {
                counters.refusedConnections.add(1, ordering: .relaxed)
                throw TooManyConnections(limit: limit)
            }
            state.connections[id] = (channel, handler)
        }
        channel.closeFuture.whenComplete { _ in
            _ = self.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    func bound(_ listener: any Channel) {
        let port = listener.localAddress?.port ?? 0
        let (waiters, closeNow) = state.withLock { state in
            state.listener = listener
            state.bindResult = .success(port)
            defer { state.bindWaiters = [] }
            return (state.bindWaiters, state.draining)
        }
        for waiter in waiters { waiter.resume(returning: port) }
        if closeNow { listener.close(promise: nil) }
    }

    func bindFailed(_ error: any Error) {
        let waiters = state.withLock { state in
            state.bindResult = .failure(error)
            defer { state.bindWaiters = [] }
            return state.bindWaiters
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    func boundPort() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let result = state.withLock { state -> Result<Int, any Error>? in
                if state.bindResult == nil { state.bindWaiters.append(continuation) }
                return state.bindResult
            }
            if let result { continuation.resume(with: result) }
        }
    }

    /// Stops accepting: the listener closes; open connections carry on.
    func closeListener() {
        let listener = state.withLock { state in
            state.draining = true
            return state.listener
        }
        listener?.close(promise: nil)
    }

    /// GOAWAY on every connection; each closes once its last stream ends.
    func drainAll() {
        let connections = state.withLock { state in
            state.draining = true
            return Array(state.connections.values)
        }
        state.withLock { $0.listener }?.close(promise: nil)
        for connection in connections {
            let handler = connection.handler
            connection.channel.eventLoop.execute { handler.value.drain() }
        }
    }
}
