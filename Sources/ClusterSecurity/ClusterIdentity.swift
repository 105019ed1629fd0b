import X509

/// What a process is in the cluster; the role decides what its certificate may be used for and,
/// for the servers that wire TLS in, which calls it may make.
public enum ClusterRole: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A master: serves Raft, the worker protocol and the APIs, and calls other masters.
    case master
    /// A worker: calls the masters, and serves its own log service to them.
    case worker
    /// A client of the masters' APIs (operators, tools); never a server.
    case client
    /// A member of the external etcd cluster behind `--store etcd`: serves the etcd API to the
    /// masters and talks to its peers; never authorized for any call of ours.
    case etcd

    /// The role's name as written in identities (`master`, `worker`, `client`, `etcd`).
    public var description: String { rawValue }
}

/// Why a name, a URI or a certificate does not carry a cluster identity.
public enum ClusterIdentityError: Error, Equatable, CustomStringConvertible {
    /// The name is not `[a-z0-9][a-z0-9._-]{0,62}`.
    case invalidName(String)
    /// The URI is not `orch://<role>/<name>` with a known role and a valid name.
    case invalidURI(String)
    /// The certificate carries no `orch://` URI in its subject alternative names.
    case noIdentity
    /// The certificate carries more than one `orch://` URI: which one the peer is would be ambiguous.
    case severalIdentities([String])
    /// The certificate's subject alternative names extension could not be decoded.
    case unreadableExtension(String)

    /// A sentence naming the problem.
    public var description: String {
        switch self {
        case .invalidName(let name):
            return "\"\(name)\" is not a valid name (1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"
        case .invalidURI(let uri): return "\"\(uri)\" is not orch://<master|worker|client>/<name>"
        case .noIdentity: return "the certificate has no orch://<role>/<name> URI subject alternative name"
        case .severalIdentities(let uris): return "the certificate has several orch:// URIs (\(uris.joined(separator: ", "))), exactly one is allowed"
        case .unreadableExtension(let reason): return "the certificate's subject alternative names cannot be read: \(reason)"
        }
    }
}

/// Who a process is: its role and its name, unique within the role (`master/m1`, `worker/w-3`).
///
/// Written into every certificate the cluster CA issues as the URI subject alternative name
/// `orch://<role>/<name>`: a peer is who its certificate says, never what a message field claims.
public struct ClusterIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The URI scheme of identities in certificates.
    public static let uriScheme = "orch"

    /// What the process is.
    public let role: ClusterRole
    /// Its name within the role.
    public let name: String

    /// An identity; throws `ClusterIdentityError.invalidName` unless `name` matches
    /// `[a-z0-9][a-z0-9._-]{0,62}` (so that it fits in a URI, a file name and a DNS label unescaped).
    public init(role: ClusterRole, name: String) throws {
        guard Self.isValidName(name) else { throw ClusterIdentityError.invalidName(name) }
        self.role = role
        self.name = name
    }

    /// Parses `orch://<role>/<name>`.
    public init(uri: String) throws {
        let prefix = Self.uriScheme + "://"
        guard uri.hasPrefix(prefix) else { throw ClusterIdentityError.invalidURI(uri) }
        let parts = uri.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let role = ClusterRole(rawValue: String(parts[0])), Self.isValidName(String(parts[1])) else {
            throw ClusterIdentityError.invalidURI(uri)
        }
        self.role = role
        self.name = String(parts[1])
    }

    /// The identity written in `certificate`: its one `orch://` URI subject alternative name.
    /// Other URIs are ignored; none, or more than one `orch://` URI, is an error.
    public init(certificate: Certificate) throws {
        let names: SubjectAlternativeNames?
        do {
            names = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw ClusterIdentityError.unreadableExtension("\(error)")
        }
        var uris: [String] = []
        for case .uniformResourceIdentifier(let uri) in names ?? SubjectAlternativeNames() where uri.hasPrefix(Self.uriScheme + ":") {
            uris.append(uri)
        }
        guard let only = uris.first else { throw ClusterIdentityError.noIdentity }
        guard uris.count == 1 else { throw ClusterIdentityError.severalIdentities(uris) }
        self = try ClusterIdentity(uri: only)
    }

    /// `orch://<role>/<name>`.
    public var uri: String { "\(Self.uriScheme)://\(role.rawValue)/\(name)" }

    /// `<role>-<name>`: the stem of this identity's certificate and key files.
    public var fileStem: String { "\(role.rawValue)-\(name)" }

    /// `<role>/<name>`.
    public var description: String { "\(role.rawValue)/\(name)" }

    /// Whether `name` matches `[a-z0-9][a-z0-9._-]{0,62}`.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
        return alphanumeric(bytes[0]) && bytes.dropFirst().allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }
}
