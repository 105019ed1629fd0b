import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Testing
@testable import ClusterSecurity

/// What one side of a connection saw: the peer's identity after the handshake, or the error
/// that ended it.
typealias HandshakeOutcome = Result<ClusterIdentity, any Error>

/// Reports the outcome of the TLS handshake on its channel once: the identity `TLSMaterial`
/// finds after `handshakeCompleted`, or the first error, or the connection closing before either.
/// The server asks on the event loop as the handshake completes (the client may hang up right
/// after); the client, which closes only once it has its outcome, asks through the async API.
final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    struct ClosedBeforeHandshake: Error {}

    let material: TLSMaterial
    let onEventLoop: Bool
    let report: @Sendable (HandshakeOutcome) -> Void
    var reported = false

    init(material: TLSMaterial, onEventLoop: Bool, report: @escaping @Sendable (HandshakeOutcome) -> Void) {
        self.material = material
        self.onEventLoop = onEventLoop
        self.report = report
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent, !reported {
            reported = true
            if onEventLoop {
                report(Result { try material.peerIdentity(in: context.pipeline.syncOperations) })
            } else {
                let (channel, material, report) = (context.channel, material, report)
                Task {
                    do { report(.success(try await material.peerIdentity(of: channel))) } catch { report(.failure(error)) }
                }
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(ClosedBeforeHandshake()))
        context.fireChannelInactive()
    }

    private func finish(_ outcome: HandshakeOutcome) {
        guard !reported else { return }
        reported = true
        report(outcome)
    }
}

/// A TLS server on 127.0.0.1 with `configuration`, whose connections' outcomes arrive in `outcomes`.
struct TestServer {
    let channel: any Channel
    let outcomes: AsyncStream<HandshakeOutcome>

    static func start(group: any EventLoopGroup, material: TLSMaterial, configuration: TLSConfiguration) async throws -> TestServer {
        let context = try NIOSSLContext(configuration: configuration)
        let (outcomes, continuation) = AsyncStream<HandshakeOutcome>.makeStream()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try child.pipeline.syncOperations.addHandler(HandshakeObserver(material: material, onEventLoop: true) { continuation.yield($0) })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestServer(channel: channel, outcomes: outcomes)
    }

    var port: Int { channel.localAddress!.port! }

    /// The outcome of the next connection.
    func nextOutcome() async throws -> HandshakeOutcome {
        var iterator = outcomes.makeAsyncIterator()
        return try #require(await iterator.next())
    }
}

/// Connects to 127.0.0.1:`port` with `configuration` and returns what the client saw.
func connect(group: any EventLoopGroup, port: Int, material: TLSMaterial, configuration: TLSConfiguration) async throws -> HandshakeOutcome {
    let context = try NIOSSLContext(configuration: configuration)
    let (outcomes, continuation) = AsyncStream<HandshakeOutcome>.makeStream()
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                // No server name: the target is an IP literal, which NIOSSL then checks against the
                // certificate's IP addresses.
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                try channel.pipeline.syncOperations.addHandler(HandshakeObserver(material: material, onEventLoop: false) { continuation.yield($0) })
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    var iterator = outcomes.makeAsyncIterator()
    let outcome = try #require(await iterator.next())
    try? await channel.close()
    return outcome
}

@Suite struct HandshakeTests {
    @Test("TLS 1.3 between serverConfiguration() and clientConfiguration(): each side sees the other's identity")
    func mutualTLS() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try material(directory, .master, "m1")
            let w1 = try material(directory, .worker, "w1")
            let server = try await TestServer.start(group: MultiThreadedEventLoopGroup.singleton, material: m1, configuration: m1.serverConfiguration())
            defer { server.channel.close(promise: nil) }
            let client = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: w1,
                                           configuration: w1.clientConfiguration())
            #expect(try client.get() == ClusterIdentity(role: .master, name: "m1"))
            #expect(try await server.nextOutcome().get() == ClusterIdentity(role: .worker, name: "w1"))
        }
    }

    @Test("a client with a certificate from another CA is refused")
    func otherCA() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let other = try makeCluster(in: path + "/other")
            let m1 = try material(directory, .master, "m1")
            // Trusts our CA (so it would accept the server), but its own certificate is the other CA's.
            let intruder = try material(other, .worker, "w1")
            var configuration = intruder.clientConfiguration()
            configuration.trustRoots = m1.serverConfiguration().trustRoots
            let server = try await TestServer.start(group: MultiThreadedEventLoopGroup.singleton, material: m1, configuration: m1.serverConfiguration())
            defer { server.channel.close(promise: nil) }
            _ = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: intruder, configuration: configuration)
            let outcome = try await server.nextOutcome()
            #expect(throws: NIOSSLError.self) { try outcome.get() }
        }
    }

    @Test("a client without a certificate is refused")
    func noClientCertificate() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try material(directory, .master, "m1")
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = m1.serverConfiguration().trustRoots
            configuration.minimumTLSVersion = .tlsv13
            let server = try await TestServer.start(group: MultiThreadedEventLoopGroup.singleton, material: m1, configuration: m1.serverConfiguration())
            defer { server.channel.close(promise: nil) }
            _ = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: m1, configuration: configuration)
            let outcome = try await server.nextOutcome()
            #expect(throws: NIOSSLError.self) { try outcome.get() }
        }
    }

    @Test("hostname verification: a server whose certificate does not name 127.0.0.1 is refused unless verifyHostname is false")
    func hostnameVerification() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            // w1 was issued without hosts: its certificate names no address.
            let w1 = try material(directory, .worker, "w1")
            let m1 = try material(directory, .master, "m1")
            let server = try await TestServer.start(group: MultiThreadedEventLoopGroup.singleton, material: w1, configuration: w1.serverConfiguration())
            defer { server.channel.close(promise: nil) }
            let refused = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: m1, configuration: m1.clientConfiguration())
            #expect(throws: (any Error).self) { try refused.get() }
            _ = try await server.nextOutcome()
            let accepted = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: m1,
                                             configuration: m1.clientConfiguration(verifyHostname: false))
            #expect(try accepted.get() == ClusterIdentity(role: .worker, name: "w1"))
            #expect(try await server.nextOutcome().get() == ClusterIdentity(role: .master, name: "m1"))
        }
    }

    @Test("TLS 1.2 clients are refused by serverConfiguration()")
    func tls12Refused() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try material(directory, .master, "m1")
            let w1 = try material(directory, .worker, "w1")
            var configuration = w1.clientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            configuration.maximumTLSVersion = .tlsv12
            let server = try await TestServer.start(group: MultiThreadedEventLoopGroup.singleton, material: m1, configuration: m1.serverConfiguration())
            defer { server.channel.close(promise: nil) }
            let client = try await connect(group: MultiThreadedEventLoopGroup.singleton, port: server.port, material: w1, configuration: configuration)
            #expect(throws: (any Error).self) { try client.get() }
            await #expect(throws: (any Error).self) { try await server.nextOutcome().get() }
        }
    }
}
