import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOSSL
import X509

/// What our own server transport (`DirectHTTP2ServerTransport`) puts in
/// `ServerContext.transportSpecific` once it has verified the peer's certificate: the identity
/// in it.
public struct AuthenticatedPeer: ServerContext.TransportSpecific, Hashable {
    /// Who the peer is, from its certificate.
    public var identity: ClusterIdentity

    /// The peer `identity`, as verified by the transport.
    public init(identity: ClusterIdentity) {
        self.identity = identity
    }
}

/// Why a connection or a call has no verified cluster identity.
public enum PeerIdentityError: Error, Equatable, CustomStringConvertible {
    /// The server context carries no transport information we know (a plaintext transport, or an
    /// in-process one).
    case noTransportInformation
    /// The peer presented no certificate: the server was not configured with mutual TLS, or the
    /// handshake has not completed yet.
    case noPeerCertificate
    /// The channel's pipeline has no NIOSSL handler.
    case noTLSHandler
    /// The peer's certificate could not be decoded.
    case unreadableCertificate(String)
    /// The certificate is not signed by the cluster CA (the server verified nothing).
    case notIssuedByClusterCA
    /// The certificate carries no usable `orch://` identity.
    case noIdentity(ClusterIdentityError)

    /// A sentence naming the problem.
    public var description: String {
        switch self {
        case .noTransportInformation: return "the call carries no TLS peer information (plaintext or in-process transport)"
        case .noPeerCertificate: return "the peer presented no certificate (no mutual TLS, or the handshake is not complete)"
        case .noTLSHandler: return "the connection has no TLS handler"
        case .unreadableCertificate(let reason): return "the peer's certificate cannot be decoded: \(reason)"
        case .notIssuedByClusterCA: return "the peer's certificate was not issued by the cluster CA"
        case .noIdentity(let error): return "the peer's certificate: \(error)"
        }
    }
}

/// Finding out who is on the other end of a call or a connection.
public enum ClusterPeer {
    /// The identity of the caller of a gRPC method: from our own transport's `AuthenticatedPeer`,
    /// or from the client certificate grpc-swift-nio-transport's `HTTP2ServerTransport.Posix` puts
    /// in its `Context` (it verified the chain during the handshake when configured with
    /// `TLSMaterial.grpcServerSecurity()`).
    public static func identity(in context: ServerContext) throws -> ClusterIdentity {
        switch context.transportSpecific {
        case let peer as AuthenticatedPeer:
            return peer.identity
        case let posix as HTTP2ServerTransport.Posix.Context:
            guard let certificate = posix.peerCertificate else { throw PeerIdentityError.noPeerCertificate }
            return try identity(of: certificate)
        default:
            throw PeerIdentityError.noTransportInformation
        }
    }

    /// The identity in a peer's certificate.
    public static func identity(of certificate: Certificate) throws -> ClusterIdentity {
        do {
            return try ClusterIdentity(certificate: certificate)
        } catch let error as ClusterIdentityError {
            throw PeerIdentityError.noIdentity(error)
        }
    }
}

extension TLSMaterial {
    /// The verified identity of the peer on `channel`, whose pipeline has a `NIOSSLServerHandler`
    /// (or client handler) configured from this material, once its handshake has completed (for
    /// instance when the first request arrives).
    ///
    /// Ask while the connection is open: a closed channel's pipeline has no TLS handler any more
    /// (`PeerIdentityError.noTLSHandler`). A handler that reacts to `TLSUserEvent.handshakeCompleted`
    /// should use `peerIdentity(in:)` right there instead, before the peer can hang up.
    public func peerIdentity(of channel: any Channel) async throws -> ClusterIdentity {
        try await channel.eventLoop.submit { try self.peerIdentity(in: channel.pipeline.syncOperations) }.get()
    }

    /// The same, on the channel's event loop (`context.pipeline.syncOperations` in a handler).
    ///
    /// The handshake already verified the chain against the CA; the signature is checked again
    /// here so that a handler configured without verification by mistake cannot let an unverified
    /// identity through.
    public func peerIdentity(in pipeline: ChannelPipeline.SynchronousOperations) throws -> ClusterIdentity {
        let presented: NIOSSLCertificate?
        do {
            // The validated chain exists only with a custom verification callback; else the leaf.
            if let chain = try pipeline.nioSSL_peerValidatedCertificateChain() {
                presented = chain.leaf
            } else {
                presented = try pipeline.nioSSL_peerCertificate()
            }
        } catch is ChannelPipelineError {
            throw PeerIdentityError.noTLSHandler
        }
        guard let presented else { throw PeerIdentityError.noPeerCertificate }
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: presented.toDERBytes())
        } catch {
            throw PeerIdentityError.unreadableCertificate("\(error)")
        }
        guard issuedByClusterCA(certificate) else { throw PeerIdentityError.notIssuedByClusterCA }
        return try ClusterPeer.identity(of: certificate)
    }
}
