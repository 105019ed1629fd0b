import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import Synchronization

/// Runs a grpc-swift HTTP/2 server so that stopping it can never crash the process.
///
/// Why this exists: grpc-swift-nio-transport (2.9) hands each connection's inbound HTTP/2 streams
/// to a task through an `AsyncThrowingStream`. Cancelling `GRPCServer.serve()` cancels those tasks,
/// which terminates the streams while the connections are still open; a peer's next HEADERS frame
/// then creates a stream channel that nobody takes, and dropping it trips SwiftNIO's
/// "Deinited NIOAsyncWriter without calling finish()" precondition. A master whose etcd port
/// could not be bound crashed that way while its peers' Raft streams were arriving (seen in CI,
/// reproduced with a port held by another process and HTTP/2 clients on the rpc port).
///
/// So the server is never cancelled while a connection is open: when the caller is cancelled it
/// begins a graceful shutdown (listener closed, GOAWAY on every connection), gives in-flight calls
/// `grace` to end, then closes whatever connections remain, waits until they are closed, and only
/// then cancels `serve()`, when no frame can arrive any more.
public final class StoppableGRPCServer<Transport: ServerTransport>: Sendable {
    private let server: GRPCServer<Transport>
    private let tracker: ConnectionTracker
    private let grace: Duration

    /// - Parameters:
    ///   - transport: an HTTP/2 transport whose configuration went through ``ConnectionTracker/install(on:)``
    ///     of `tracker`.
    ///   - grace: how long calls in flight may run on after a stop was asked for.
    public init(transport: Transport, services: [any RegistrableRPCService], tracker: ConnectionTracker,
                grace: Duration = .milliseconds(500)) {
        self.server = GRPCServer(transport: transport, services: services)
        self.tracker = tracker
        self.grace = grace
    }

    /// Wraps a server built elsewhere (with a router, say).
    public init(server: GRPCServer<Transport>, tracker: ConnectionTracker, grace: Duration = .milliseconds(500)) {
        self.server = server
        self.tracker = tracker
        self.grace = grace
    }

    /// The underlying server's transport (for its listening address).
    public var transport: Transport { server.transport }

    /// Serves until the calling task is cancelled, then stops as described above and returns.
    ///
    /// - Throws: what `serve()` throws when it stops on its own (a port that cannot be bound).
    public func run() async throws {
        let finished = Latch()
        // Unstructured on purpose: the caller's cancellation must not reach `serve()` directly.
        let serving = Task { [server] in
            defer { finished.fire() }
            try await server.serve()
        }
        await finished.wait()
        if !finished.isFired {
            // Cancelled. The stop runs in its own task: waits in a cancelled task end at once.
            await Task { [server, tracker, grace] in
                server.beginGracefulShutdown()
                if await !finished.wait(atMost: grace) {
                    await tracker.closeAll()
                }
                serving.cancel()
                await finished.wait()
            }.value
            _ = try? await serving.value
            return
        }
        try await serving.value
    }
}

/// Knows the listener and every open connection of one HTTP/2 gRPC server, so that they can be
/// closed before the tasks serving them are cancelled.
public final class ConnectionTracker: Sendable {
    private struct State {
        var listeners: [ObjectIdentifier: any Channel] = [:]
        var connections: [ObjectIdentifier: any Channel] = [:]
        var closing = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Open connections right now.
    public var openConnections: Int { state.withLock { $0.connections.count } }

    /// Adds tracking to the transport's channel callbacks, keeping any set before.
    public func install(on config: inout HTTP2ServerTransport.Posix.Config) {
        let onBind = config.channelDebuggingCallbacks.onBindTCPListener
        let onAccept = config.channelDebuggingCallbacks.onAcceptTCPConnection
        config.channelDebuggingCallbacks.onBindTCPListener = { [self] channel in
            track(channel, in: \.listeners)
            return onBind?(channel) ?? channel.eventLoop.makeSucceededVoidFuture()
        }
        config.channelDebuggingCallbacks.onAcceptTCPConnection = { [self] channel in
            if !track(channel, in: \.connections) {
                // Accepted while the server was being closed: it goes as soon as it is active,
                // before it can read a frame.
                do {
                    try channel.pipeline.syncOperations.addHandler(CloseWhenActive(), position: .first)
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            return onAccept?(channel) ?? channel.eventLoop.makeSucceededVoidFuture()
        }
    }

    /// Records `channel` until it closes; false when the tracker is already closing.
    @discardableResult
    private func track(_ channel: any Channel, in set: WritableKeyPath<State, [ObjectIdentifier: any Channel]>) -> Bool {
        let id = ObjectIdentifier(channel)
        let closing = state.withLock { state -> Bool in
            state[keyPath: set][id] = channel
            return state.closing
        }
        channel.closeFuture.whenComplete { _ in
            _ = self.state.withLock { $0[keyPath: set].removeValue(forKey: id) }
        }
        return !closing
    }

    /// Closes the listener and every connection, then waits (at most `limit`) until all are closed,
    /// connections accepted meanwhile included.
    public func closeAll(limit: Duration = .seconds(5)) async {
        let channels = state.withLock { state -> [any Channel] in
            state.closing = true
            return Array(state.listeners.values) + Array(state.connections.values)
        }
        for channel in channels { channel.close(promise: nil) }
        let deadline = ContinuousClock.now + limit
        for channel in channels {
            _ = try? await channel.closeFuture.get()
        }
        // A connection accepted just before the listener closed closes itself once active.
        while state.withLock({ !$0.connections.isEmpty || !$0.listeners.isEmpty }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Closes its channel the moment it becomes active.
private final class CloseWhenActive: ChannelInboundHandler, Sendable {
    typealias InboundIn = Any

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}
