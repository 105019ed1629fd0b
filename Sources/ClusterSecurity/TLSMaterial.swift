import Foundation
import GRPCNIOTransportHTTP2
import NIOCore
import NIOSSL
import SwiftASN1
import X509

/// Why the TLS material could not be loaded: the file, and what is wrong with it.
public struct TLSMaterialError: Error, Equatable, CustomStringConvertible {
    /// What is wrong with a file.
    public enum Problem: Equatable, Sendable {
        /// The file does not exist.
        case missing
        /// The file exists but cannot be read (the system's message).
        case unreadable(String)
        /// The file holds no PEM block of the expected kind (`CERTIFICATE`, `PRIVATE KEY`).
        case notPEM(expected: String)
        /// A PEM block that does not decode (the decoder's message).
        case invalid(String)
        /// The key file's key is not the one of the certificate in `certificateFile`.
        case keyDoesNotMatchCertificate(certificateFile: String)
        /// The certificate is not signed by (any certificate in) `caFile`.
        case notIssuedByCA(caFile: String)
        /// The certificate expired at `notValidAfter`.
        case expired(notValidAfter: Date)
        /// The certificate is valid only from `notValidBefore` (a clock behind, or a certificate from the future).
        case notYetValid(notValidBefore: Date)
        /// The CA file holds a certificate without basicConstraints CA:true.
        case notACertificateAuthority
        /// The certificate carries no usable `orch://` identity.
        case noIdentity(ClusterIdentityError)
    }

    /// The file at fault.
    public let file: String
    /// What is wrong with it.
    public let problem: Problem

    /// A description naming the file and the problem.
    public var description: String {
        let what: String
        switch problem {
        case .missing: what = "no such file"
        case .unreadable(let reason): what = "cannot be read: \(reason)"
        case .notPEM(let expected): what = "is not PEM: no -----BEGIN \(expected)----- block"
        case .invalid(let reason): what = "cannot be decoded: \(reason)"
        case .keyDoesNotMatchCertificate(let certificateFile): what = "the private key does not match the certificate in \(certificateFile)"
        case .notIssuedByCA(let caFile): what = "the certificate was not issued by the cluster CA in \(caFile)"
        case .expired(let date): what = "the certificate expired on \(date)"
        case .notYetValid(let date): what = "the certificate is not valid before \(date) (is the clock right?)"
        case .notACertificateAuthority: what = "is not a CA certificate (no basicConstraints CA:true)"
        case .noIdentity(let error): what = "\(error)"
        }
        return "TLS material: \(file): \(what)"
    }
}

/// A process's TLS material, loaded and checked: the cluster CA (the only trust root), this
/// process's certificate and key, and the identity the certificate carries.
///
/// Every check that can fail is done here, at start-up, with an error naming the file; the
/// configurations built from it afterwards cannot fail. They use the bytes read here rather than
/// the paths, so a file replaced after the checks never reaches a server unchecked.
public struct TLSMaterial: Sendable {
    /// The identity in our certificate.
    public let identity: ClusterIdentity
    /// Our certificate.
    public let certificate: Certificate
    /// The cluster CA's certificates (usually one; several while a CA is being replaced).
    public let caCertificates: [Certificate]

    private let certificateDER: [UInt8]
    private let privateKeyPEM: [UInt8]
    private let caDER: [[UInt8]]
    private let nioCertificate: NIOSSLCertificate
    private let nioPrivateKey: NIOSSLPrivateKey
    private let nioCACertificates: [NIOSSLCertificate]

    /// Loads and checks the material: each file exists and is PEM, the CA file holds CA
    /// certificates, the certificate is within its validity at `now` and signed by the CA, it
    /// carries exactly one `orch://` identity, and the key is the certificate's. The key may be
    /// PKCS#8 (`PRIVATE KEY`, what `master tls init` and `openssl genpkey` write) or SEC1
    /// (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes).
    public init(caFile: String, certificateFile: String, keyFile: String, now: Date = Date()) throws {
        let caDocuments = try Self.pemDocuments(caFile, kinds: ["CERTIFICATE"])
        var caCertificates: [Certificate] = []
        for document in caDocuments {
            let ca = try Self.decode(caFile) { try Certificate(pemDocument: document) }
            guard case .isCertificateAuthority = try Self.decode(caFile, { try ca.extensions.basicConstraints }) else {
                throw TLSMaterialError(file: caFile, problem: .notACertificateAuthority)
            }
            try Self.checkValidity(ca, file: caFile, now: now)
            caCertificates.append(ca)
        }

        // A certificate file may carry intermediates after the leaf; the leaf comes first.
        let leafDocument = try Self.pemDocuments(certificateFile, kinds: ["CERTIFICATE"])[0]
        let leaf = try Self.decode(certificateFile) { try Certificate(pemDocument: leafDocument) }
        try Self.checkValidity(leaf, file: certificateFile, now: now)
        guard caCertificates.contains(where: { $0.subject == leaf.issuer && $0.publicKey.isValidSignature(leaf.signature, for: leaf) }) else {
            throw TLSMaterialError(file: certificateFile, problem: .notIssuedByCA(caFile: caFile))
        }
        do {
            identity = try ClusterIdentity(certificate: leaf)
        } catch let error as ClusterIdentityError {
            throw TLSMaterialError(file: certificateFile, problem: .noIdentity(error))
        }

        // `openssl ecparam -genkey` puts an EC PARAMETERS block before the key: look for the key's.
        let keyDocument = try Self.pemDocuments(keyFile, kinds: ["PRIVATE KEY", "EC PRIVATE KEY"])[0]
        let key = try Self.decode(keyFile) { try Certificate.PrivateKey(pemDocument: keyDocument) }
        guard key.publicKey == leaf.publicKey else {
            throw TLSMaterialError(file: keyFile, problem: .keyDoesNotMatchCertificate(certificateFile: certificateFile))
        }

        // Re-encoded as PKCS#8, the one form every consumer (BoringSSL, the gRPC transport) reads.
        let keyPEM = Array(try Self.decode(keyFile) { try key.serializeAsPEM().pemString }.utf8)
        let leafDER = Array(leafDocument.derBytes)
        let caDER = caDocuments.map { Array($0.derBytes) }
        nioCertificate = try Self.decode(certificateFile) { try NIOSSLCertificate(bytes: leafDER, format: .der) }
        nioPrivateKey = try Self.decode(keyFile) { try NIOSSLPrivateKey(bytes: keyPEM, format: .pem) }
        nioCACertificates = try caDER.map { der in try Self.decode(caFile) { try NIOSSLCertificate(bytes: der, format: .der) } }
        certificate = leaf
        self.caCertificates = caCertificates
        certificateDER = leafDER
        privateKeyPEM = keyPEM
        self.caDER = caDER
    }

    /// How long closing a connection waits for the peer's close_notify. NIOSSL's default is 5 s,
    /// which held a master's graceful stop (its REST connections closing) 5 s past its 3 s bound;
    /// a peer that does not answer in half a second has gone, and nothing is lost by not waiting.
    static let shutdownTimeout: TimeAmount = .milliseconds(500)

    /// For servers: TLS 1.3 only, our certificate and key, and client certificates required and
    /// verified against the cluster CA alone (not the system's roots). Clients are not addressed
    /// by name, so no hostname is checked: who a client is comes from its `orch://` identity
    /// (`peerIdentity(of:)`). `applicationProtocols` is the ALPN list (`["h2"]` for gRPC).
    public func serverConfiguration(applicationProtocols: [String] = []) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(nioCertificate)], privateKey: .privateKey(nioPrivateKey))
        configuration.minimumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates(nioCACertificates)
        // .noHostnameVerification on a server: a client certificate is required and its chain
        // must lead to the trust roots, or the handshake fails.
        configuration.certificateVerification = .noHostnameVerification
        configuration.applicationProtocols = applicationProtocols
        configuration.shutdownTimeout = Self.shutdownTimeout
        return configuration
    }

    /// For the REST API (HTTPS): as `serverConfiguration`, but a client certificate is optional
    /// (checked against the cluster CA when one is sent): REST callers are people and scripts
    /// that authenticate with the API token, and curl needs only `--cacert`.
    public func httpsServerConfiguration() -> TLSConfiguration {
        var configuration = serverConfiguration(applicationProtocols: ["http/1.1"])
        configuration.certificateVerification = .optionalVerification
        return configuration
    }

    /// For clients: TLS 1.3 only, our certificate presented, and the server's chain verified
    /// against the cluster CA alone.
    ///
    /// Hostname verification is on by default (`verifyHostname`): the server's certificate must
    /// name the host or IP literal we connect to (NIOSSL checks an IP target against the IP
    /// subject alternative names), so a stolen worker certificate cannot pose as a master at a
    /// master's address. That is why `master tls init` puts each master's hosts, and 127.0.0.1 and
    /// localhost, in its certificate. Pass `false` for peers whose addresses are not known when
    /// their certificate is issued (workers on DHCP addresses); the caller must then check the
    /// peer's `orch://` identity.
    public func clientConfiguration(verifyHostname: Bool = true, applicationProtocols: [String] = []) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.certificateChain = [.certificate(nioCertificate)]
        configuration.privateKey = .privateKey(nioPrivateKey)
        configuration.trustRoots = .certificates(nioCACertificates)
        configuration.certificateVerification = verifyHostname ? .fullVerification : .noHostnameVerification
        configuration.applicationProtocols = applicationProtocols
        configuration.shutdownTimeout = Self.shutdownTimeout
        return configuration
    }

    /// The same server side for grpc-swift-nio-transport's `HTTP2ServerTransport.Posix`: mutual
    /// TLS, client certificates required and verified against the cluster CA alone. The transport
    /// fixes its minimum at TLS 1.2 and exposes no setting for it, so this one also accepts 1.2.
    /// The handler sees the peer's certificate in `ServerContext.transportSpecific`
    /// (`ClusterPeer.identity(in:)`).
    public func grpcServerSecurity() -> HTTP2ServerTransport.Posix.TransportSecurity {
        .mTLS(certificateChain: [.bytes(certificateDER, format: .der)], privateKey: .bytes(privateKeyPEM, format: .pem)) { config in
            config.trustRoots = .certificates(caDER.map { .bytes($0, format: .der) })
            config.clientCertificateVerification = .noHostnameVerification
        }
    }

    /// The same client side for grpc-swift-nio-transport's `HTTP2ClientTransport.Posix`, with
    /// hostname verification as in `clientConfiguration(verifyHostname:)`. TLS 1.2 is accepted
    /// for the reason given at `grpcServerSecurity()`.
    public func grpcClientSecurity(verifyHostname: Bool = true) -> HTTP2ClientTransport.Posix.TransportSecurity {
        .mTLS(certificateChain: [.bytes(certificateDER, format: .der)], privateKey: .bytes(privateKeyPEM, format: .pem)) { config in
            config.trustRoots = .certificates(caDER.map { .bytes($0, format: .der) })
            config.serverCertificateVerification = verifyHostname ? .fullVerification : .noHostnameVerification
        }
    }

    /// Whether `other` was issued by the cluster CA (its issuer is a CA certificate's subject and
    /// it carries that CA's signature).
    public func issuedByClusterCA(_ other: Certificate) -> Bool {
        caCertificates.contains { $0.subject == other.issuer && $0.publicKey.isValidSignature(other.signature, for: other) }
    }

    // MARK: - Reading the files

    /// The file's PEM blocks of one of `kinds`, at least one, in order; other blocks are skipped.
    private static func pemDocuments(_ path: String, kinds: Set<String>) throws -> [PEMDocument] {
        let text: String
        switch SecureFiles.readFile(path) {
        case .success(let contents): text = contents
        case .failure(let failure) where failure.errno == ENOENT: throw TLSMaterialError(file: path, problem: .missing)
        case .failure(let failure): throw TLSMaterialError(file: path, problem: .unreadable(failure.message))
        }
        let expected = kinds.sorted().joined(separator: "/")
        guard text.contains("-----BEGIN ") else { throw TLSMaterialError(file: path, problem: .notPEM(expected: expected)) }
        let documents = try decode(path) { try PEMDocument.parseMultiple(pemString: text) }.filter { kinds.contains($0.discriminator) }
        guard !documents.isEmpty else { throw TLSMaterialError(file: path, problem: .notPEM(expected: expected)) }
        return documents
    }

    private static func decode<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as TLSMaterialError {
            throw error
        } catch {
            throw TLSMaterialError(file: path, problem: .invalid("\(error)"))
        }
    }

    private static func checkValidity(_ certificate: Certificate, file: String, now: Date) throws {
        if now > certificate.notValidAfter { throw TLSMaterialError(file: file, problem: .expired(notValidAfter: certificate.notValidAfter)) }
        if now < certificate.notValidBefore { throw TLSMaterialError(file: file, problem: .notYetValid(notValidBefore: certificate.notValidBefore)) }
    }
}
