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
    /// instance on `TLSUserEvent.handshakeCompleted`, or when the first request arrives).
    ///
    /// The handshake already verified the chain against the CA; the signature is checked again
    /// here so that a handler configured without verification by mistake cannot let an unverified
    /// identity through.
    public func peerIdentity(of channel: any Channel) async throws -> ClusterIdentity {
        let presented: NIOSSLCertificate?
        do {
            // The validated chain exists only with a custom verification callback; else the leaf.
            if let chain = try await channel.nioSSL_peerValidatedCertificateChain().get() {
                presented = chain.leaf
            } else {
                presented = try await channel.nioSSL_peerCertificate().get()
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
