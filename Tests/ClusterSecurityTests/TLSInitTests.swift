import Foundation
import Testing
@testable import ClusterSecurity

@Suite struct TLSInitTests {
    @Test("tls init writes the CA and each identity's files, keys 0600, and refuses to overwrite the CA")
    func initWritesFiles() async throws {
        try await withTemporaryDirectory { base in
            let path = base + "/tls"
            let report = try TLSInit(directory: path, requests: [
                CertificateRequest(role: .master, spec: "m1=10.0.0.1"),
                CertificateRequest(role: .master, spec: "m2=10.0.0.2,m2.example"),
                CertificateRequest(role: .worker, spec: "w1"),
                CertificateRequest(role: .client, spec: "ops"),
            ]).run()
            let directory = TLSDirectory(path: path)
            #expect(SecureFiles.permissions(of: path) == 0o700)
            #expect(SecureFiles.permissions(of: directory.caKey) == 0o600)
            #expect(SecureFiles.permissions(of: directory.caCertificate) == 0o644)
            for (role, name) in [(ClusterRole.master, "m1"), (.master, "m2"), (.worker, "w1"), (.client, "ops")] {
                let identity = try ClusterIdentity(role: role, name: name)
                #expect(directory.certificate(identity) == "\(path)/\(role)-\(name).pem")
                #expect(SecureFiles.permissions(of: directory.key(identity)) == 0o600)
                #expect(SecureFiles.permissions(of: directory.certificate(identity)) == 0o644)
                #expect(try material(directory, role, name).identity == identity)
                #expect(report.text.contains("--tls-ca \(path)/ca.pem --tls-cert \(path)/\(role)-\(name).pem --tls-key \(path)/\(role)-\(name)-key.pem"))
            }
            #expect(report.text.contains("wrote \(path)/ca-key.pem"))
            let before = try String(contentsOfFile: directory.caCertificate, encoding: .utf8)
            #expect(throws: TLSToolError.caExists(directory.caCertificate)) {
                try TLSInit(directory: path, requests: []).run()
            }
            #expect(try String(contentsOfFile: directory.caCertificate, encoding: .utf8) == before)
            var forced = TLSInit(directory: path, requests: [])
            forced.force = true
            _ = try forced.run()
            #expect(try String(contentsOfFile: directory.caCertificate, encoding: .utf8) != before)
        }
    }

    @Test("masters get loopback names unless told not to; others never")
    func loopback() async throws {
        try await withTemporaryDirectory { path in
            var plan = try TLSInit(directory: path, requests: [CertificateRequest(role: .master, spec: "m1=10.0.0.1"), CertificateRequest(role: .worker, spec: "w1=w1.example")])
            _ = try plan.run()
            let directory = TLSDirectory(path: path)
            let m1 = try material(directory, .master, "m1").certificate.extensions.subjectAlternativeNames.map { Array($0) } ?? []
            #expect(m1.contains(.dnsName("localhost")))
            #expect(m1.count == 4)
            let w1 = try material(directory, .worker, "w1").certificate.extensions.subjectAlternativeNames.map { Array($0) } ?? []
            #expect(w1 == [.uniformResourceIdentifier("orch://worker/w1"), .dnsName("w1.example")])
            plan.loopback = false
            plan.force = true
            _ = try plan.run()
            let bare = try material(directory, .master, "m1").certificate.extensions.subjectAlternativeNames.map { Array($0) } ?? []
            #expect(bare.count == 2)
        }
    }

    @Test("a bad request writes nothing")
    func badRequestWritesNothing() async throws {
        try await withTemporaryDirectory { base in
            let path = base + "/tls"
            #expect(throws: TLSToolError.self) { try CertificateRequest(role: .master, spec: "m1=bad host") }
            #expect(throws: TLSToolError.self) { try CertificateRequest(role: .master, spec: "M1=10.0.0.1") }
            #expect(throws: TLSToolError.self) { try CertificateRequest(role: .master, spec: "m1=") }
            let w1 = try CertificateRequest(role: .worker, spec: "w1")
            #expect(throws: TLSToolError.duplicateIdentity(w1.identity)) { try TLSInit(directory: path, requests: [w1, w1]).run() }
            #expect(!SecureFiles.exists(path))
        }
    }

    @Test("tls issue adds a certificate from the existing CA")
    func issue() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let caBefore = try String(contentsOfFile: directory.caCertificate, encoding: .utf8)
            let report = try TLSIssue(directory: path, request: CertificateRequest(role: .worker, spec: "w2")).run()
            let w2 = try material(directory, .worker, "w2")
            #expect(try w2.identity == ClusterIdentity(role: .worker, name: "w2"))
            #expect(SecureFiles.permissions(of: directory.key(w2.identity)) == 0o600)
            #expect(report.text.contains("--tls-cert \(path)/worker-w2.pem"))
            #expect(try String(contentsOfFile: directory.caCertificate, encoding: .utf8) == caBefore)
            #expect(throws: TLSToolError.certificateExists(directory.certificate(w2.identity))) {
                try TLSIssue(directory: path, request: CertificateRequest(role: .worker, spec: "w2")).run()
            }
            let empty = path + "/empty"
            let error = #expect(throws: TLSToolError.self) { try TLSIssue(directory: empty, request: CertificateRequest(role: .worker, spec: "w3")).run() }
            guard case .caUnusable(let file, _)? = error else { Issue.record("expected caUnusable, got \(String(describing: error))"); return }
            #expect(file == empty + "/ca.pem")
        }
    }
}
