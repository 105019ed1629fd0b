import Crypto
import Foundation
import SwiftASN1
import Testing
import X509
@testable import ClusterSecurity

@Suite struct IdentityTests {
    @Test("names follow [a-z0-9][a-z0-9._-]{0,62}", arguments: [
        ("m1", true), ("worker-3.rack_2", true), (String(repeating: "a", count: 63), true),
        ("", false), ("-m1", false), ("M1", false), ("m/1", false), (String(repeating: "a", count: 64), false), ("m 1", false),
    ])
    func names(name: String, valid: Bool) {
        #expect(ClusterIdentity.isValidName(name) == valid)
        #expect(((try? ClusterIdentity(role: .worker, name: name)) != nil) == valid)
    }

    @Test func uriRoundTrip() throws {
        let identity = try ClusterIdentity(role: .master, name: "m1")
        #expect(identity.uri == "orch://master/m1")
        #expect(try ClusterIdentity(uri: identity.uri) == identity)
        for bad in ["orch://admin/m1", "orch://master/", "orch://master/m1/x", "http://master/m1", "orch:master/m1", "orch://master/M1"] {
            #expect(throws: ClusterIdentityError.invalidURI(bad)) { try ClusterIdentity(uri: bad) }
        }
    }

    @Test("issued certificates parse back to their identity, with the right IP and DNS SANs and key usages")
    func issuedCertificates() throws {
        let ca = try CertificateAuthority.create()
        let master = try ClusterIdentity(role: .master, name: "m1")
        let issued = try ca.issue(for: master, hosts: ["10.0.0.1", "[fd00::1]", "m1.Example.com", "::ffff:10.0.0.2"])
        #expect(try ClusterIdentity(certificate: issued.certificate) == master)
        #expect(ca.signed(issued.certificate))
        let names = try #require(try issued.certificate.extensions.subjectAlternativeNames)
        #expect(Array(names) == [
            .uniformResourceIdentifier("orch://master/m1"),
            .ipAddress(ASN1OctetString(contentBytes: [10, 0, 0, 1])),
            .ipAddress(ASN1OctetString(contentBytes: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            .dnsName("m1.example.com"),
            .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2])),
        ])
        #expect(try issued.certificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth, .clientAuth]))
        #expect(try issued.certificate.extensions.basicConstraints == .notCertificateAuthority)
        #expect(issued.certificate.signatureAlgorithm == .ecdsaWithSHA256)
        // A year, less the backdating.
        let days = issued.certificate.notValidAfter.timeIntervalSince(issued.certificate.notValidBefore) / 86_400
        #expect(abs(days - 365) < 0.01)

        let client = try ca.issue(for: ClusterIdentity(role: .client, name: "ops"))
        #expect(try client.certificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.clientAuth]))
        #expect(try ClusterIdentity(certificate: client.certificate) == ClusterIdentity(role: .client, name: "ops"))
        #expect(client.certificate.serialNumber != issued.certificate.serialNumber)
    }

    @Test func caCertificate() throws {
        let ca = try CertificateAuthority.create(days: 10)
        #expect(try ca.certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try ca.certificate.extensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        #expect(ca.certificate.issuer == ca.certificate.subject)
        #expect(ca.certificate.publicKey.isValidSignature(ca.certificate.signature, for: ca.certificate))
        #expect(throws: (any Error).self) { try CertificateAuthority(certificate: ca.certificate, privateKey: P256.Signing.PrivateKey()) }
    }

    @Test func invalidHostsAreRefused() throws {
        let ca = try CertificateAuthority.create()
        let worker = try ClusterIdentity(role: .worker, name: "w1")
        for host in ["", "a b", "-x.example", "x..example", "10.0.0.1:9090"] {
            #expect(throws: IssuanceError.invalidHost(host)) { try ca.issue(for: worker, hosts: [host]) }
        }
    }

    @Test("a certificate without exactly one orch:// URI has no identity")
    func certificatesWithoutOneIdentity() throws {
        let ca = try CertificateAuthority.create()
        func certificate(_ uris: [String]) throws -> Certificate {
            let key = P256.Signing.PrivateKey()
            let extensions = try Certificate.Extensions {
                SubjectAlternativeNames(uris.map { GeneralName.uniformResourceIdentifier($0) } + [.dnsName("x.example")])
            }
            return try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date(), notValidAfter: Date() + 3600,
                issuer: ca.certificate.subject, subject: try DistinguishedName { CommonName("x") }, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions, issuerPrivateKey: .init(ca.privateKey))
        }
        #expect(throws: ClusterIdentityError.noIdentity) { try ClusterIdentity(certificate: certificate([])) }
        #expect(throws: ClusterIdentityError.noIdentity) { try ClusterIdentity(certificate: certificate(["https://x.example/"])) }
        #expect(throws: ClusterIdentityError.severalIdentities(["orch://master/m1", "orch://worker/w1"])) {
            try ClusterIdentity(certificate: certificate(["orch://master/m1", "orch://worker/w1"]))
        }
        #expect(throws: ClusterIdentityError.invalidURI("orch://root/x")) { try ClusterIdentity(certificate: certificate(["orch://root/x"])) }
        #expect(try ClusterIdentity(certificate: certificate(["https://x.example/", "orch://worker/w1"])) == ClusterIdentity(role: .worker, name: "w1"))
    }
}
