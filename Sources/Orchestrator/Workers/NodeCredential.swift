import Crypto
import Foundation

/// The secret a master issues to a worker at its first join, bound to that node id.
///
/// The join token admits new nodes; after that, every call for a node (heartbeat, reports, its
/// assignment stream, a re-join) must carry the node's own credential, so a worker, or anyone who
/// learned the join token, cannot act for another node or take over its id (Kubernetes exchanges
/// its bootstrap token for a per-node certificate the same way). The masters keep only the
/// SHA-256 of the secret in the node record: a copy of the store does not hand out credentials.
public struct NodeCredential: Sendable, Hashable {
    /// What the worker holds and sends: 32 random bytes, base64url without padding.
    public let secret: String

    public init(secret: String) { self.secret = secret }

    /// A new credential from the system's cryptographic random source.
    public static func issue() -> NodeCredential {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return NodeCredential(secret: Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: ""))
    }

    /// What the node record stores: the hex SHA-256 of the secret.
    public var digest: String { Self.digest(of: secret) }

    public static func digest(of secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).hex
    }

    /// Whether `presented` is the secret whose digest is `stored`, in time independent of where
    /// they differ.
    public static func matches(presented: String, stored: String) -> Bool {
        APIAuth.constantTimeEquals(Array(digest(of: presented).utf8), Array(stored.utf8))
    }
}

/// Who may join as a node id: a pure decision over what the store holds and what the worker
/// presented, so its rules are table tests (`NodeAdmissionTests`).
public enum NodeAdmission: Sendable, Equatable {
    /// Admit and issue a new credential (a new node, or one registered before credentials existed).
    case admitIssuing
    /// Admit a node that proved it holds its credential; it keeps that credential.
    case admitKeeping
    /// Refuse, with the reason the worker is told.
    case refuse(String)

    /// - Parameters:
    ///   - id: the node id asked for.
    ///   - storedDigest: `nil` when no such node exists; `.some(nil)` for a node registered
    ///     without a credential (before this version); `.some(digest)` otherwise.
    ///   - presented: the credential the worker sent (empty: none).
    ///   - tokenAccepted: whether the join token (or a worker certificate) admits new nodes.
    public static func decide(id: String, storedDigest: String??, presented: String, tokenAccepted: Bool) -> NodeAdmission {
        switch storedDigest {
        case .some(.some(let digest)):
            if !presented.isEmpty, NodeCredential.matches(presented: presented, stored: digest) { return .admitKeeping }
            return .refuse(presented.isEmpty
                ? "node \(id) is already registered and this worker has no credential for it: remove node-id from its --data-dir to join as a new node"
                : "node \(id) is already registered with another credential: remove node-id and node-credential from its --data-dir to join as a new node")
        case .some(.none), .none:
            // A node without a credential is adopted by whoever holds the join token, once: from
            // then on its credential is required.
            return tokenAccepted ? .admitIssuing : .refuse("join token does not match this cluster's (--join-token)")
        }
    }
}

extension SHA256.Digest {
    /// Lowercase hex, as node records and idempotency records store digests.
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}
