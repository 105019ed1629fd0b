import NIOCore
import NIOPosix
import RaftTestSupport
import Synchronization
import Testing

/// The fault proxy itself, between a TCP client and an echo server on loopback: bytes pass, a
/// one-way cut discards exactly one direction (and counts what it discarded), a heal closes the
/// connections that lost bytes, and a new connection on a cut link never reaches the server.
@Suite struct FaultProxyTests {
    @Test("the proxy passes bytes, cuts one direction, blackholes new connections and closes broken ones on heal")
    func proxyFaults() async throws {
        let base = try PortBlock.reserve(offsets: [0, 1])
        let server = EchoServer()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Recorder(server.received, echo: true)) }
                    .map { server.accept() }
            }
            .bind(host: "127.0.0.1", port: base).get()
        defer { listener.close(promise: nil) }
        // Master 0's link to master 1: client side is 0, server side is 1.
        let proxy = try FaultProxy(links: [.init(from: 0, to: 1, port: base + 1, target: base)])
        defer { proxy.shutdown() }
        let toServer = FaultProxy.Flow(from: 0, to: 1), toClient = FaultProxy.Flow(from: 1, to: 0)

        let (client, received) = try await connect(port: base + 1)
        client.writeAndFlush(ByteBuffer(string: "ab"), promise: nil)
        try await eventually("the echo of ab") { server.received.text == "ab" && received.text == "ab" }

        proxy.cut(from: 1, to: 0)
        client.writeAndFlush(ByteBuffer(string: "cd"), promise: nil)
        try await eventually("cd at the server, its echo discarded") {
            server.received.text == "abcd" && proxy.discardedBytes[toClient] == 2
        }
        #expect(received.text == "ab")
        #expect(proxy.discardedBytes[toServer] == nil)

        #expect(proxy.heal() == 1)
        try await eventually("the connection that lost bytes closed") { !client.isActive }

        proxy.cut(from: 0, to: 1)
        let (second, _) = try await connect(port: base + 1)
        second.writeAndFlush(ByteBuffer(string: "x"), promise: nil)
        try await eventually("x discarded") { proxy.discardedBytes[toServer] == 1 }
        #expect(server.acceptedCount == 1, "a connection on a cut link reached the server")
        #expect(server.received.text == "abcd")

        #expect(proxy.heal() == 1)
        try await eventually("the blackholed connection closed") { !second.isActive }
        let (third, thirdReceived) = try await connect(port: base + 1)
        third.writeAndFlush(ByteBuffer(string: "ef"), promise: nil)
        try await eventually("the echo of ef after healing") { thirdReceived.text == "ef" }
        #expect(server.acceptedCount == 2)
        third.close(promise: nil)
    }

    private func connect(port: Int) async throws -> (Channel, ByteBox) {
        let box = ByteBox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Recorder(box, echo: false)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, box)
    }

    /// Polls `condition` (every 10 ms, for at most 5 s).
    private func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

private final class EchoServer: Sendable {
    let received = ByteBox()
    private let accepted = Mutex(0)
    func accept() { accepted.withLock { $0 += 1 } }
    var acceptedCount: Int { accepted.withLock { $0 } }
}

private final class ByteBox: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ buffer: ByteBuffer) { bytes.withLock { $0 += buffer.readableBytesView } }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}

/// Records what it reads (and echoes it back, for the server).
private final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let box: ByteBox
    let echo: Bool

    init(_ box: ByteBox, echo: Bool) {
        self.box = box
        self.echo = echo
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        box.append(buffer)
        if echo { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
    }
}
