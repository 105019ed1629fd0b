import GRPCCore
import GRPCServing
import NIOCore
import NIOSSL
import NIOTLS

extension ConnectionSecurity {
    /// Mutual TLS for a server that builds its own pipeline (`DirectHTTP2ServerTransport`): a TLS
    /// handler on each accepted connection, and its `AuthenticatedPeer` once the handshake has
    /// completed.
    ///
    /// The transport asks for the identity as the connection is accepted, before any byte has
    /// arrived, and holds the connection's frames until it is known; so the identity is a future
    /// that a handler behind the TLS handler completes at `handshakeCompleted`, reading the
    /// certificate right there, before the peer can hang up (`TLSMaterial.peerIdentity(in:)`). It
    /// fails, closing the connection, when the handshake fails or the certificate carries no
    /// cluster identity.
    ///
    /// - Parameters:
    ///   - material: this server's certificate and the cluster CA; clients must present a
    ///     certificate the CA issued.
    ///   - applicationProtocols: ALPN (`["h2"]` for gRPC: grpc-go clients such as etcdctl insist).
    public static func mutualTLS(_ material: TLSMaterial, applicationProtocols: [String] = ["h2"]) throws -> ConnectionSecurity {
        // One context for every connection: building one parses the certificate and key.
        let context = try NIOSSLContext(configuration: material.serverConfiguration(applicationProtocols: applicationProtocols))
        return ConnectionSecurity(
            initializeConnection: { channel in
                let pipeline = channel.pipeline.syncOperations
                try pipeline.addHandler(NIOSSLServerHandler(context: context))
                try pipeline.addHandler(PeerIdentityHandler(material: material, promise: channel.eventLoop.makePromise()))
            },
            identity: { channel in
                do {
                    let handler = try channel.pipeline.syncOperations.handler(type: PeerIdentityHandler.self)
                    return handler.promise.futureResult.map { AuthenticatedPeer(identity: $0) }
                } catch {
                    return channel.eventLoop.makeFailedFuture(PeerIdentityError.noTLSHandler)
                }
            })
    }
}

/// Completes `promise` with the peer's identity when the TLS handshake completes, or fails it
/// when the connection ends first.
final class PeerIdentityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let material: TLSMaterial
    let promise: EventLoopPromise<ClusterIdentity>
    private var settled = false

    init(material: TLSMaterial, promise: EventLoopPromise<ClusterIdentity>) {
        self.material = material
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, !settled {
            settled = true
            do {
                promise.succeed(try material.peerIdentity(in: context.pipeline.syncOperations))
            } catch {
                promise.fail(error)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        settle(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        settle(PeerIdentityError.noPeerCertificate)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        settle(PeerIdentityError.noTLSHandler)
    }

    private func settle(_ error: any Error) {
        guard !settled else { return }
        settled = true
        promise.fail(error)
    }
}
