import Crypto
import Foundation
import SwiftASN1
import X509

/// Why a certificate could not be issued.
public enum IssuanceError: Error, Equatable, CustomStringConvertible {
    /// A host given for a subject alternative name is neither an IP literal nor a DNS name.
    case invalidHost(String)
    /// A validity of zero or fewer days.
    case invalidValidity(days: Int)

    /// A sentence naming the problem.
    public var description: String {
        switch self {
        case .invalidHost(let host): return "\"\(host)\" is neither an IPv4/IPv6 literal nor a DNS name"
        case .invalidValidity(let days): return "a validity of \(days) days: it must be at least 1"
        }
    }
}

/// A certificate and its private key, as issued by a `CertificateAuthority`.
public struct IssuedCertificate: Sendable {
    /// The identity in the certificate's `orch://` URI.
    public let identity: ClusterIdentity
    /// The certificate, signed by the CA.
    public let certificate: Certificate
    /// Its ECDSA P-256 private key.
    public let privateKey: P256.Signing.PrivateKey

    /// The certificate as a `CERTIFICATE` PEM block.
    public func certificatePEM() throws -> String { try certificate.serializeAsPEM().pemString + "\n" }
    /// The key as a PKCS#8 `PRIVATE KEY` PEM block, as `openssl genpkey` writes it.
    public var privateKeyPEM: String { privateKey.pemRepresentation + "\n" }
}

/// The cluster's certificate authority: a self-signed ECDSA P-256 certificate and its key, which
/// sign every certificate of the cluster. Whoever holds the key can mint any identity, so its file
/// stays on the operator's machine (0600), never on the servers.
public struct CertificateAuthority: Sendable {
    /// The CA's self-signed certificate (the trust root every process loads).
    public let certificate: Certificate
    /// The CA's signing key.
    public let privateKey: P256.Signing.PrivateKey

    /// Ten years: the CA outlives many rounds of leaf certificates.
    public static let defaultDays = 3650
    /// One year for process certificates.
    public static let defaultLeafDays = 365
    /// Certificates start this long before their issuance, so that a peer whose clock is a little
    /// behind does not reject a certificate issued a moment ago as not yet valid.
    static let backdating: TimeInterval = 300

    /// A CA from an existing certificate and key; throws `CertificateAuthorityError` if the key is
    /// not the certificate's or the certificate may not sign others.
    public init(certificate: Certificate, privateKey: P256.Signing.PrivateKey) throws {
        guard certificate.publicKey == Certificate.PublicKey(privateKey.publicKey) else {
            throw CertificateAuthorityError.keyDoesNotMatch
        }
        guard case .isCertificateAuthority = try certificate.extensions.basicConstraints else {
            throw CertificateAuthorityError.notACertificateAuthority
        }
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// A new CA with a fresh key: self-signed, basicConstraints CA:true with path length 0 (it
    /// signs process certificates, never other CAs), keyUsage keyCertSign and cRLSign.
    public static func create(commonName: String = "orchestrator cluster CA", days: Int = defaultDays, now: Date = Date()) throws -> CertificateAuthority {
        guard days > 0 else { throw IssuanceError.invalidValidity(days: days) }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName {
            OrganizationName("orchestrator")
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - backdating, notValidAfter: now + TimeInterval(days) * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        return try CertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// Issues a certificate for `identity`, valid `days` from `now`, with a fresh P-256 key and a
    /// random serial. Its subject alternative names are the `orch://` URI of the identity, then
    /// each of `hosts`: IPv4 and IPv6 literals (`[::1]` too) as IP addresses, anything else as a
    /// DNS name. Masters and workers serve and call, so they get serverAuth and clientAuth;
    /// clients only call, so they get clientAuth.
    public func issue(for identity: ClusterIdentity, hosts: [String] = [], days: Int = defaultLeafDays, now: Date = Date()) throws -> IssuedCertificate {
        guard days > 0 else { throw IssuanceError.invalidValidity(days: days) }
        var names: [GeneralName] = [.uniformResourceIdentifier(identity.uri)]
        var seen: Set<String> = []
        for host in hosts where seen.insert(host.lowercased()).inserted {
            names.append(try Self.subjectAlternativeName(host))
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName("orchestrator")
            OrganizationalUnitName(identity.role.rawValue)
            CommonName(identity.name)
        }
        let usages = try ExtendedKeyUsage(identity.role == .client ? [.clientAuth] : [.serverAuth, .clientAuth])
        let caKeyIdentifier = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            usages
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: caKeyIdentifier)
        }
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - Self.backdating, notValidAfter: now + TimeInterval(days) * 86_400,
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(privateKey))
        return IssuedCertificate(identity: identity, certificate: leaf, privateKey: key)
    }

    /// Whether `certificate` carries this CA's signature and names it as issuer.
    public func signed(_ other: Certificate) -> Bool {
        other.issuer == certificate.subject && certificate.publicKey.isValidSignature(other.signature, for: other)
    }

    /// The CA's certificate as a `CERTIFICATE` PEM block.
    public func certificatePEM() throws -> String { try certificate.serializeAsPEM().pemString + "\n" }
    /// The CA's key as a PKCS#8 `PRIVATE KEY` PEM block.
    public var privateKeyPEM: String { privateKey.pemRepresentation + "\n" }

    /// The subject alternative name for `host`: an IP address for an IPv4 or IPv6 literal
    /// (brackets allowed), else a DNS name of letters, digits, `-`, `.` (and a leading `*.`).
    static func subjectAlternativeName(_ host: String) throws -> GeneralName {
        if let bytes = IPAddress.bytes(host) {
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))
        }
        let name = host.lowercased()
        let labels = (name.hasPrefix("*.") ? String(name.dropFirst(2)) : name).split(separator: ".", omittingEmptySubsequences: false)
        let valid = !name.isEmpty && name.utf8.count <= 253 && labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
        }
        guard valid else { throw IssuanceError.invalidHost(host) }
        return .dnsName(name)
    }
}

/// Why an existing certificate and key do not make a CA.
public enum CertificateAuthorityError: Error, Equatable, CustomStringConvertible {
    /// The key is not the certificate's.
    case keyDoesNotMatch
    /// The certificate lacks basicConstraints CA:true.
    case notACertificateAuthority

    /// A sentence naming the problem.
    public var description: String {
        switch self {
        case .keyDoesNotMatch: return "the private key does not match the CA certificate"
        case .notACertificateAuthority: return "the certificate is not a CA certificate (no basicConstraints CA:true)"
        }
    }
}

/// IP literals, parsed by the C library so that every form it accepts (`::ffff:1.2.3.4` too) works.
enum IPAddress {
    /// The 4 or 16 bytes of an IPv4 or IPv6 literal (`[::1]` allowed), or nil for anything else.
    static func bytes(_ text: String) -> [UInt8]? {
        var literal = text
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
