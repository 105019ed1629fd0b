import Crypto
import Foundation
import X509

/// One certificate to issue: an identity and the host names and IP literals it serves on.
public struct CertificateRequest: Sendable, Hashable {
    /// Whose certificate.
    public var identity: ClusterIdentity
    /// Host names and IP literals for its subject alternative names.
    public var hosts: [String]

    /// A request for `identity` with `hosts`.
    public init(identity: ClusterIdentity, hosts: [String] = []) {
        self.identity = identity
        self.hosts = hosts
    }

    /// Parses the command line's `NAME` or `NAME=HOST,HOST,...` for `role` (`--master m1=10.0.0.1,m1.local`).
    public init(role: ClusterRole, spec: String) throws {
        let parts = spec.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let name = String(parts[0])
        guard ClusterIdentity.isValidName(name) else { throw TLSToolError.invalidSpec(role: role, spec: spec, reason: ClusterIdentityError.invalidName(name).description) }
        let hosts = parts.count == 2 ? parts[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } : []
        if parts.count == 2, hosts.isEmpty || hosts.contains(where: \.isEmpty) {
            throw TLSToolError.invalidSpec(role: role, spec: spec, reason: "expected NAME=HOST[,HOST...]")
        }
        for host in hosts {
            do { _ = try CertificateAuthority.subjectAlternativeName(host) } catch {
                throw TLSToolError.invalidSpec(role: role, spec: spec, reason: "\(error)")
            }
        }
        self.init(identity: try ClusterIdentity(role: role, name: name), hosts: hosts)
    }
}

/// Why `master tls init` or `master tls issue` did nothing.
public enum TLSToolError: Error, Equatable, CustomStringConvertible {
    /// The directory already has a CA; replacing it would orphan every certificate it issued.
    case caExists(String)
    /// `tls issue` found no CA certificate or key to sign with.
    case caUnusable(path: String, reason: String)
    /// The certificate file exists already.
    case certificateExists(String)
    /// A `--master`/`--worker`/`--client` value that does not parse.
    case invalidSpec(role: ClusterRole, spec: String, reason: String)
    /// The same identity asked for twice.
    case duplicateIdentity(ClusterIdentity)
    /// `tls issue` needs exactly one identity.
    case notExactlyOneIdentity(Int)

    /// A sentence naming the problem and what to do.
    public var description: String {
        switch self {
        case .caExists(let path): return "\(path) exists: a new CA would invalidate every certificate the old one issued (--force replaces it)"
        case .caUnusable(let path, let reason): return "cannot use the CA: \(path): \(reason) (create one with `master tls init`)"
        case .certificateExists(let path): return "\(path) exists (--force replaces it)"
        case .invalidSpec(let role, let spec, let reason): return "--\(role) \(spec): \(reason)"
        case .duplicateIdentity(let identity): return "\(identity) is given twice"
        case .notExactlyOneIdentity(let count): return "give exactly one of --master, --worker, --client, --etcd (got \(count))"
        }
    }
}

/// What `master tls init` or `master tls issue` wrote, and how to use it.
public struct TLSToolReport: Sendable {
    /// The files written, in order.
    public var written: [String] = []
    /// For each identity issued, its `--tls-ca`, `--tls-cert` and `--tls-key` flags.
    public var flags: [(identity: ClusterIdentity, flags: String)] = []

    /// The lines to print.
    public var text: String {
        var lines = written.map { "wrote \($0)" }
        if !flags.isEmpty { lines.append("flags:") }
        lines += flags.map { "  \($0.identity): \($0.flags)" }
        return lines.joined(separator: "\n")
    }
}

/// The files of a directory of TLS material, as `master tls init` lays them out.
public struct TLSDirectory: Sendable {
    /// The directory.
    public let path: String

    /// The material in `path`.
    public init(path: String) { self.path = path }

    /// `ca.pem`: the CA certificate, which every process loads as its only trust root.
    public var caCertificate: String { path + "/ca.pem" }
    /// `ca-key.pem`: the CA key (0600). Only `tls init` and `tls issue` need it.
    public var caKey: String { path + "/ca-key.pem" }
    /// `<role>-<name>.pem`.
    public func certificate(_ identity: ClusterIdentity) -> String { path + "/\(identity.fileStem).pem" }
    /// `<role>-<name>-key.pem` (0600).
    public func key(_ identity: ClusterIdentity) -> String { path + "/\(identity.fileStem)-key.pem" }
    /// The flags a process with `identity` starts with.
    public func flags(_ identity: ClusterIdentity) -> String {
        if identity.role == .etcd {
            // etcd's own flags: TLS for its clients (the masters) and its peers, both requiring
            // a certificate from this CA.
            return "--trusted-ca-file \(caCertificate) --cert-file \(certificate(identity)) --key-file \(key(identity)) --client-cert-auth "
                + "--peer-trusted-ca-file \(caCertificate) --peer-cert-file \(certificate(identity)) --peer-key-file \(key(identity)) --peer-client-cert-auth"
        }
        return "--tls-ca \(caCertificate) --tls-cert \(certificate(identity)) --tls-key \(key(identity))"
    }
}

/// `master tls init`: a new cluster CA and a certificate for each identity, in one directory.
public struct TLSInit: Sendable {
    /// Where the files go (created 0700 if missing).
    public var directory: TLSDirectory
    /// The certificates to issue.
    public var requests: [CertificateRequest]
    /// The validity of the process certificates.
    public var days = CertificateAuthority.defaultLeafDays
    /// The validity of the CA.
    public var caDays = CertificateAuthority.defaultDays
    /// Masters also get 127.0.0.1 and localhost: local tools and a one-host trial cluster reach
    /// them there.
    public var loopback = true
    /// Replace an existing CA (and certificates).
    public var force = false

    /// A plan for `directory` issuing `requests`.
    public init(directory: String, requests: [CertificateRequest]) {
        self.directory = TLSDirectory(path: directory)
        self.requests = requests
    }

    /// Creates the CA and the certificates, all in memory first so that a bad request writes
    /// nothing, then writes them: certificates 0644, keys 0600.
    public func run(now: Date = Date()) throws -> TLSToolReport {
        var identities: Set<ClusterIdentity> = []
        for request in requests where !identities.insert(request.identity).inserted {
            throw TLSToolError.duplicateIdentity(request.identity)
        }
        if !force {
            for path in [directory.caCertificate, directory.caKey] where SecureFiles.exists(path) { throw TLSToolError.caExists(path) }
        }
        let ca = try CertificateAuthority.create(days: caDays, now: now)
        let issued = try requests.map { try ca.issue(for: $0.identity, hosts: TLSIssue.hosts(for: $0, loopback: loopback), days: days, now: now) }

        try SecureFiles.makeDirectory(directory.path)
        var report = TLSToolReport()
        try SecureFiles.writeFile(ca.privateKeyPEM, to: directory.caKey, mode: 0o600)
        report.written.append("\(directory.caKey) (the CA key: keep it off the servers)")
        try SecureFiles.writeFile(try ca.certificatePEM(), to: directory.caCertificate, mode: 0o644)
        report.written.append("\(directory.caCertificate) (the CA certificate: every process trusts it)")
        for certificate in issued {
            report.written += try TLSIssue.write(certificate, in: directory)
            report.flags.append((certificate.identity, directory.flags(certificate.identity)))
        }
        return report
    }
}

/// `master tls issue`: one more certificate from the CA of an existing directory.
public struct TLSIssue: Sendable {
    /// The directory with `ca.pem` and `ca-key.pem`, where the new files go.
    public var directory: TLSDirectory
    /// The certificate to issue.
    public var request: CertificateRequest
    /// Its validity.
    public var days = CertificateAuthority.defaultLeafDays
    /// For a master: add 127.0.0.1 and localhost.
    public var loopback = true
    /// Replace an existing certificate of the same identity.
    public var force = false

    /// A plan issuing `request` from the CA in `directory`.
    public init(directory: String, request: CertificateRequest) {
        self.directory = TLSDirectory(path: directory)
        self.request = request
    }

    /// Loads the CA, issues the certificate and writes it with its key (0600).
    public func run(now: Date = Date()) throws -> TLSToolReport {
        if !force, SecureFiles.exists(directory.certificate(request.identity)) {
            throw TLSToolError.certificateExists(directory.certificate(request.identity))
        }
        let ca = try loadCA()
        let issued = try ca.issue(for: request.identity, hosts: Self.hosts(for: request, loopback: loopback), days: days, now: now)
        var report = TLSToolReport()
        report.written = try Self.write(issued, in: directory)
        report.flags = [(issued.identity, directory.flags(issued.identity))]
        return report
    }

    private func loadCA() throws -> CertificateAuthority {
        func read(_ path: String) throws -> String {
            switch SecureFiles.readFile(path) {
            case .success(let text): return text
            case .failure(let failure): throw TLSToolError.caUnusable(path: path, reason: failure.message)
            }
        }
        let certificate: Certificate
        do { certificate = try Certificate(pemEncoded: read(directory.caCertificate)) } catch let error as TLSToolError { throw error } catch {
            throw TLSToolError.caUnusable(path: directory.caCertificate, reason: "\(error)")
        }
        let key: P256.Signing.PrivateKey
        do { key = try P256.Signing.PrivateKey(pemRepresentation: read(directory.caKey)) } catch let error as TLSToolError { throw error } catch {
            throw TLSToolError.caUnusable(path: directory.caKey, reason: "not a P-256 ECDSA private key in PEM: \(error)")
        }
        do { return try CertificateAuthority(certificate: certificate, privateKey: key) } catch {
            throw TLSToolError.caUnusable(path: directory.caKey, reason: "\(error)")
        }
    }

    /// The hosts of `request`, plus the loopback names for a master when `loopback`.
    static func hosts(for request: CertificateRequest, loopback: Bool) -> [String] {
        request.identity.role == .master && loopback ? request.hosts + ["127.0.0.1", "localhost"] : request.hosts
    }

    /// Writes the key (0600) then the certificate (0644), so a certificate never sits beside a
    /// missing key; returns what was written.
    static func write(_ issued: IssuedCertificate, in directory: TLSDirectory) throws -> [String] {
        try SecureFiles.makeDirectory(directory.path)
        try SecureFiles.writeFile(issued.privateKeyPEM, to: directory.key(issued.identity), mode: 0o600)
        try SecureFiles.writeFile(try issued.certificatePEM(), to: directory.certificate(issued.identity), mode: 0o644)
        return [directory.certificate(issued.identity) + " (\(issued.identity))", directory.key(issued.identity)]
    }
}
