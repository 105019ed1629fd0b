import Foundation
import GRPCServing
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The options the transport sets on the sockets it accepts, read back from the kernel.
@Suite struct SocketOptionTests {
    /// Regression (issue 20): `.socketOption(.tcp_nodelay)` is SOL_SOCKET level, where option 1 is
    /// SO_DEBUG. As root that set SO_DEBUG and left Nagle on; as any other user `setsockopt` failed
    /// and every inbound connection was dropped, so masters run by an ordinary user never formed a
    /// cluster. An accepted connection must have TCP_NODELAY on and SO_DEBUG off.
    @Test("an accepted connection has TCP_NODELAY set at the TCP level and SO_DEBUG off")
    func acceptedConnectionHasNoDelay() async throws {
        let seen = Mutex<(noDelay: Int, debug: Int)?>(nil)
        var config = DirectHTTP2ServerTransport.Configuration()
        config.connectionInitializer = { channel in
            let options = try #require(channel.syncOptions)
            let noDelay = try options.getOption(ChannelOptions.tcpOption(.tcp_nodelay))
            let debug = try options.getOption(ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_DEBUG)))
            seen.withLock { $0 = (noDelay, debug) }
        }
        let transport = DirectHTTP2ServerTransport(host: "127.0.0.1", port: 0, configuration: config)
        let serving = Task { try await transport.listen { _, _ in } }
        defer { serving.cancel() }
        let port = try await transport.listeningPort

        // A plain TCP client: the server side's options are what is checked.
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        defer { client.close(promise: nil) }
        let deadline = ContinuousClock.now + .seconds(30)
        while seen.withLock({ $0 }) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let options = try #require(seen.withLock { $0 }, "the server never saw the connection")
        #expect(options.noDelay != 0, "TCP_NODELAY is off on an accepted connection")
        #expect(options.debug == 0, "SO_DEBUG is on on an accepted connection")
    }
}
