import Foundation
import Testing
@testable import ClusterSecurity

/// What the certificates look like to another implementation: openssl.
@Suite(.enabled(if: opensslPath != nil, "openssl is not installed (Debian: apt-get install openssl): these tests check our certificates with it"))
struct OpenSSLTests {
    @Test("openssl verify accepts every issued certificate against ca.pem, and x509 -text shows the URIs and IPs")
    func verifyAndText() async throws {
        let openssl = try #require(opensslPath)
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            for (role, name) in [(ClusterRole.master, "m1"), (.worker, "w1"), (.client, "ops")] {
                let identity = try ClusterIdentity(role: role, name: name)
                let verify = try run(openssl, ["verify", "-CAfile", directory.caCertificate, directory.certificate(identity)])
                #expect(verify.status == 0, "\(verify.output)")
                #expect(verify.output.contains(": OK"), "\(verify.output)")
                let text = try run(openssl, ["x509", "-in", directory.certificate(identity), "-noout", "-text"])
                #expect(text.status == 0)
                #expect(text.output.contains("URI:orch://\(role)/\(name)"), "\(text.output)")
                // openssl reads our PKCS#8 key.
                let key = try run(openssl, ["pkey", "-in", directory.key(identity), "-noout"])
                #expect(key.status == 0, "\(key.output)")
            }
            let m1 = try ClusterIdentity(role: .master, name: "m1")
            let text = try run(openssl, ["x509", "-in", directory.certificate(m1), "-noout", "-text"]).output
            for expected in ["IP Address:10.0.0.1", "DNS:m1.example", "IP Address:127.0.0.1", "DNS:localhost", "TLS Web Server Authentication", "TLS Web Client Authentication"] {
                #expect(text.contains(expected), "\(expected) not in \(text)")
            }
            let ca = try run(openssl, ["x509", "-in", directory.caCertificate, "-noout", "-text"]).output
            #expect(ca.contains("CA:TRUE, pathlen:0"), "\(ca)")
            #expect(ca.contains("Certificate Sign, CRL Sign"), "\(ca)")
            // And a certificate from another CA is refused.
            let other = try makeCluster(in: path + "/other")
            let refused = try run(openssl, ["verify", "-CAfile", directory.caCertificate, other.certificate(m1)])
            #expect(refused.status != 0, "\(refused.output)")
        }
    }

    @Test("a key openssl wrote as EC PRIVATE KEY (SEC1) loads")
    func sec1Key() async throws {
        let openssl = try #require(opensslPath)
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let w1 = try ClusterIdentity(role: .worker, name: "w1")
            let sec1 = path + "/w1-sec1.pem"
            let converted = try run(openssl, ["ec", "-in", directory.key(w1), "-out", sec1])
            #expect(converted.status == 0, "\(converted.output)")
            let text = try String(contentsOfFile: sec1, encoding: .utf8)
            #expect(text.contains("-----BEGIN EC PRIVATE KEY-----"))
            let loaded = try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(w1), keyFile: sec1)
            #expect(loaded.identity == w1)
            // An EC PARAMETERS block before the key, as `openssl ecparam -genkey` writes.
            let params = try run(openssl, ["ecparam", "-name", "prime256v1"]).output
            let withParams = path + "/w1-params.pem"
            try SecureFiles.writeFile(params + text, to: withParams, mode: 0o600)
            #expect(try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(w1), keyFile: withParams).identity == w1)
        }
    }
}
