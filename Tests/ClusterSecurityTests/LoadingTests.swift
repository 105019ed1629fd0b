import Foundation
import Testing
@testable import ClusterSecurity

@Suite struct LoadingTests {
    @Test func loadsEachIdentity() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            #expect(try material(directory, .master, "m1").identity == ClusterIdentity(role: .master, name: "m1"))
            #expect(try material(directory, .worker, "w1").identity == ClusterIdentity(role: .worker, name: "w1"))
            let ops = try material(directory, .client, "ops")
            #expect(try ops.identity == ClusterIdentity(role: .client, name: "ops"))
            #expect(ops.caCertificates.count == 1)
        }
    }

    @Test("a missing file names the file")
    func missingFile() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try ClusterIdentity(role: .master, name: "m1")
            let absent = path + "/nope.pem"
            let error = #expect(throws: TLSMaterialError.self) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: absent, keyFile: directory.key(m1))
            }
            #expect(error == TLSMaterialError(file: absent, problem: .missing))
            #expect(error?.description.contains(absent) == true)
            #expect(throws: TLSMaterialError(file: absent, problem: .missing)) {
                try TLSMaterial(caFile: absent, certificateFile: directory.certificate(m1), keyFile: directory.key(m1))
            }
        }
    }

    @Test("a key that is not the certificate's names the key file and the certificate")
    func mismatchedKey() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try ClusterIdentity(role: .master, name: "m1")
            let w1 = try ClusterIdentity(role: .worker, name: "w1")
            let error = #expect(throws: TLSMaterialError.self) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(m1), keyFile: directory.key(w1))
            }
            #expect(error == TLSMaterialError(file: directory.key(w1), problem: .keyDoesNotMatchCertificate(certificateFile: directory.certificate(m1))))
            #expect(error?.description.contains(directory.key(w1)) == true)
            #expect(error?.description.contains("does not match") == true)
        }
    }

    @Test("not PEM, another CA, expired, not yet valid")
    func otherProblems() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let other = try makeCluster(in: path + "/other")
            let m1 = try ClusterIdentity(role: .master, name: "m1")
            let garbage = path + "/garbage.pem"
            try SecureFiles.writeFile("hello\n", to: garbage, mode: 0o644)
            #expect(throws: TLSMaterialError(file: garbage, problem: .notPEM(expected: "CERTIFICATE"))) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: garbage, keyFile: directory.key(m1))
            }
            // A certificate where a key belongs: PEM, but not a key.
            #expect(throws: TLSMaterialError(file: directory.certificate(m1), problem: .notPEM(expected: "EC PRIVATE KEY/PRIVATE KEY"))) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(m1), keyFile: directory.certificate(m1))
            }
            #expect(throws: TLSMaterialError(file: other.certificate(m1), problem: .notIssuedByCA(caFile: directory.caCertificate))) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: other.certificate(m1), keyFile: other.key(m1))
            }
            // A leaf certificate is not a CA.
            #expect(throws: TLSMaterialError(file: directory.certificate(m1), problem: .notACertificateAuthority)) {
                try TLSMaterial(caFile: directory.certificate(m1), certificateFile: directory.certificate(m1), keyFile: directory.key(m1))
            }
            let later = Date() + 400 * 86_400
            let expired = #expect(throws: TLSMaterialError.self) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(m1), keyFile: directory.key(m1), now: later)
            }
            guard case .expired = expired?.problem else { Issue.record("expected .expired, got \(String(describing: expired))"); return }
            #expect(expired?.file == directory.certificate(m1))
            let earlier = Date() - 3600
            let early = #expect(throws: TLSMaterialError.self) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(m1), keyFile: directory.key(m1), now: earlier)
            }
            guard case .notYetValid = early?.problem else { Issue.record("expected .notYetValid, got \(String(describing: early))"); return }
        }
    }

    @Test("an unreadable file says so")
    func unreadable() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let m1 = try ClusterIdentity(role: .master, name: "m1")
            // A directory where the certificate should be: open succeeds, read fails with EISDIR.
            let error = #expect(throws: TLSMaterialError.self) {
                try TLSMaterial(caFile: directory.caCertificate, certificateFile: path, keyFile: directory.key(m1))
            }
            guard case .unreadable = error?.problem else { Issue.record("expected .unreadable, got \(String(describing: error))"); return }
            #expect(error?.file == path)
        }
    }
}
