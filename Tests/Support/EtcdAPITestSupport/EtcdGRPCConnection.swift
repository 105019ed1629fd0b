import EtcdAPI
import EtcdProto
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import NIOCore

/// A grpc-swift client connection to an etcd v3 endpoint, ours or a real etcd.
///
/// It answers the server's HTTP/2 PINGs ahead of swift-nio-http2 (`HTTP2PingResponder`): etcd is
/// grpc-go, which probes bandwidth with about one PING per response it receives, and
/// swift-nio-http2 would otherwise drop the connection after 200 of them in 30 s.
public final class EtcdGRPCConnection: Sendable {
    public let client: GRPCClient<HTTP2ClientTransport.Posix>
    private let connections: Task<Void, Never>

    /// - Parameters:
    ///   - endpoint: `HOST:PORT` with an IPv4 host.
    ///   - security: plain text, or TLS with a client certificate (`bench etcd --tls`).
    public init(endpoint: String, answerPings: Bool = true,
                security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext) throws {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw LocalClusterError("bad endpoint \(endpoint): expected HOST:PORT") }
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: String(parts[0]), port: port), transportSecurity: security,
            config: .defaults { config in
                if answerPings {
                    config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(HTTP2PingResponder(side: .client), position: .first)
                        }
                    }
                }
            })
        let client = GRPCClient(transport: transport)
        self.client = client
        connections = Task { try? await client.runConnections() }
    }

    public var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    public var lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    public var watch: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    public var maintenance: Etcdserverpb_Maintenance.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    public var cluster: Etcdserverpb_Cluster.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }

    /// Closes the connection once in-flight calls finish.
    public func close() async {
        client.beginGracefulShutdown()
        await connections.value
    }
}
