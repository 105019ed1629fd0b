import NIOCore
import NIOPosix
import Synchronization

/// A fault-injecting TCP proxy between the masters of a `ClusterHarness(proxied: true)`: one
/// listening port per ordered pair of masters (the link from i to j, which master i dials for
/// master j), forwarding to j's real rpc address. Raft streams and forwarded writes go through
/// it, so a test can cut any direction between any two masters while every process keeps
/// running.
///
/// Faults act on *flows of bytes*, not on connections: `cut(from: i, to: j)` discards every
/// byte travelling from master i to master j, whichever of the two dialled the connection (the
/// requests on i's connections to j, the responses on j's connections to i). A blackhole keeps
/// connections open and silently discards, as a dead network does (no reset for the sender to
/// notice), and a new connection on a link with either direction cut is accepted but never
/// reaches the other side (a SYN or its answer lost).
///
/// Healing stops discarding and closes every connection that lost bytes (or never reached the
/// other side): a TCP stream cannot skip bytes, so such a connection would have broken or timed
/// out on a real network; closing it makes the endpoints reconnect, as they would there.
///
/// All I/O runs on one NIO event loop thread of its own, never on Swift concurrency's threads.
final class FaultProxy: Sendable {
    /// A direction between two masters: bytes that master `from` sends to master `to`.
    struct Flow: Hashable, Sendable, CustomStringConvertible {
        var from: Int
        var to: Int
        var description: String { "m\(from + 1)→m\(to + 1)" }
    }

    /// Master `from`'s connections to master `to`: its port, and where it forwards.
    struct Link: Sendable {
        var from: Int
        var to: Int
        var port: Int
        var target: Int
    }

    private struct Connection {
        var client: Channel
        var upstream: Channel?
        var lostBytes = false
    }

    private struct State {
        var cut: Set<Flow> = []
        var connections: [ObjectIdentifier: Connection] = [:]
        var discarded: [Flow: Int] = [:]
        var listeners: [Channel] = []
        var shutDown = false
    }

    let links: [Link]
    private let group: MultiThreadedEventLoopGroup
    private let state = Mutex(State())

    /// Listens on every link's port (127.0.0.1).
    init(links: [Link]) throws {
        self.links = links
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            for link in links {
                let channel = try ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { [self] child in accept(child, on: link) }
                    // Setup, before any master runs: a bind is quick and never waits on a peer.
                    .bind(host: "127.0.0.1", port: link.port).wait()
                state.withLock { $0.listeners.append(channel) }
            }
        } catch {
            shutdown()
            throw error
        }
    }

    // MARK: Faults

    /// Discards the bytes master `from` sends to master `to` (the other direction still passes).
    func cut(from: Int, to: Int) {
        state.withLock { _ = $0.cut.insert(Flow(from: from, to: to)) }
    }

    /// Cuts master `master` off from every other master, both ways: a minority of one.
    func isolate(_ master: Int) {
        let others = Set(links.flatMap { [$0.from, $0.to] }).subtracting([master])
        for other in others {
            cut(from: master, to: other)
            cut(from: other, to: master)
        }
    }

    /// Lets every byte pass again, and closes the connections that lost bytes on the way.
    /// - Returns: how many connections it closed.
    @discardableResult
    func heal() -> Int {
        let broken: [Connection] = state.withLock { state in
            state.cut = []
            let broken = state.connections.filter { $0.value.lostBytes }
            for id in broken.keys { state.connections[id] = nil }
            return Array(broken.values)
        }
        for connection in broken {
            connection.client.close(promise: nil)
            connection.upstream?.close(promise: nil)
        }
        return broken.count
    }

    /// The directions cut now.
    var cutFlows: Set<Flow> { state.withLock { $0.cut } }

    /// Bytes discarded so far, per direction.
    var discardedBytes: [Flow: Int] { state.withLock { $0.discarded } }

    /// Closes every listener and connection and stops the event loop (without waiting for it).
    func shutdown() {
        let channels: [Channel]? = state.withLock { state in
            guard !state.shutDown else { return nil }
            state.shutDown = true
            let open = state.listeners + state.connections.values.flatMap { [$0.client] + ($0.upstream.map { [$0] } ?? []) }
            state.listeners = []
            state.connections = [:]
            return open
        }
        guard let channels else { return }
        for channel in channels { channel.close(promise: nil) }
        group.shutdownGracefully { _ in }
    }

    // MARK: Forwarding (on the event loop)

    /// Whether bytes of `flow` pass now; when they do not, counts them and marks the connection
    /// as one that lost bytes.
    private func passes(_ flow: Flow, bytes: Int, connection: ObjectIdentifier) -> Bool {
        state.withLock { state in
            guard state.cut.contains(flow) else { return true }
            state.discarded[flow, default: 0] += bytes
            state.connections[connection]?.lostBytes = true
            return false
        }
    }

    private func accept(_ child: Channel, on link: Link) -> EventLoopFuture<Void> {
        let id = ObjectIdentifier(child)
        let forward = Flow(from: link.from, to: link.to), backward = Flow(from: link.to, to: link.from)
        let refused: Bool = state.withLock { state in
            guard !state.shutDown else { return true }
            let blocked = state.cut.contains(forward) || state.cut.contains(backward)
            state.connections[id] = Connection(client: child, lostBytes: blocked)
            return blocked
        }
        child.closeFuture.whenComplete { [self] _ in
            let upstream = state.withLock { $0.connections.removeValue(forKey: id)?.upstream }
            upstream?.close(promise: nil)
        }
        guard !refused else {
            // The connection is never answered: what the client sends is discarded until a heal
            // closes it.
            return child.eventLoop.makeCompletedFuture {
                try child.pipeline.syncOperations.addHandler(Blackhole { [self] bytes in _ = passes(forward, bytes: bytes, connection: id) })
            }
        }
        let pair = GlueHandler.matchedPair(
            clientSide: { [self] bytes in passes(forward, bytes: bytes, connection: id) },
            upstreamSide: { [self] bytes in passes(backward, bytes: bytes, connection: id) })
        let handlers = NIOLoopBound(pair, eventLoop: child.eventLoop)
        return ClientBootstrap(group: child.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(2))
            .channelInitializer { upstream in
                upstream.eventLoop.makeCompletedFuture { try upstream.pipeline.syncOperations.addHandler(handlers.value.upstream) }
            }
            .connect(host: "127.0.0.1", port: link.target)
            .flatMap { [self] upstream in
                let alive = state.withLock { state -> Bool in
                    guard state.connections[id] != nil else { return false }
                    state.connections[id]?.upstream = upstream
                    return true
                }
                guard alive else {
                    upstream.close(promise: nil)
                    return child.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
                }
                return child.eventLoop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(handlers.value.client) }
            }
    }
}

/// Reads and discards everything (a connection that never reaches the other side).
private final class Blackhole: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let discarded: (Int) -> Void
    init(_ discarded: @escaping (Int) -> Void) { self.discarded = discarded }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        discarded(unwrapInboundIn(data).readableBytes)
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// One side of a proxied connection, glued to the other (both on one event loop), as in NIO's
/// connect-proxy example: bytes read here are written there, reads pause while the other side
/// cannot take more, and a close on either side closes both. `passes` decides, per read, whether
/// the bytes go on or are discarded.
private final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let passes: (Int) -> Bool

    private init(passes: @escaping (Int) -> Bool) { self.passes = passes }

    /// The handler of the accepted (client) channel and the one of the upstream channel.
    static func matchedPair(clientSide: @escaping (Int) -> Bool, upstreamSide: @escaping (Int) -> Bool) -> (client: GlueHandler, upstream: GlueHandler) {
        let client = GlueHandler(passes: clientSide), upstream = GlueHandler(passes: upstreamSide)
        client.partner = upstream
        upstream.partner = client
        return (client, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The upstream side may have asked to read before this side existed.
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: ByteBuffer) { context?.write(NIOAny(data), promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerClose() { context?.close(promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard passes(buffer.readableBytes) else { return }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }

    func channelInactive(context: ChannelHandlerContext) { partner?.partnerClose() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerClose()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
