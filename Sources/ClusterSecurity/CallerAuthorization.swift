import GRPCCore

/// Who may call a service on an internal gRPC port, decided from the caller's certificate.
///
/// With TLS every connection carries a certificate from the cluster CA, and a caller is what its
/// certificate's `orch://` identity says, never what a field of its request claims: write
/// forwarding is for masters, the worker protocol for workers, a worker's log service for
/// masters (a client certificate, made for REST and etcd clients, opens none of them). Without
/// TLS (`master --dev`, or `--insecure` on a trusted network) there is nothing to check and
/// `caller` returns nil.
public struct CallerAuthorization: Sendable {
    /// Whether connections are authenticated (mutual TLS on the port).
    public let authenticated: Bool

    public static let unauthenticated = CallerAuthorization(authenticated: false)
    public static let mutualTLS = CallerAuthorization(authenticated: true)

    /// The caller's identity, if it has one of `roles`; throws `permissionDenied` otherwise (and
    /// `unauthenticated` for a connection without a usable certificate). Nil without TLS.
    @discardableResult
    public func caller(_ context: ServerContext, mustBe roles: Set<ClusterRole>) throws -> ClusterIdentity? {
        guard authenticated else { return nil }
        let identity: ClusterIdentity
        do {
            identity = try ClusterPeer.identity(in: context)
        } catch {
            throw RPCError(code: .unauthenticated, message: "\(context.descriptor.fullyQualifiedMethod) needs a client certificate from the cluster CA: \(error)")
        }
        guard roles.contains(identity.role) else {
            throw RPCError(code: .permissionDenied,
                           message: "\(identity) may not call \(context.descriptor.fullyQualifiedMethod) (only \(roles.map(\.rawValue).sorted().joined(separator: ", ")))")
        }
        return identity
    }
}
