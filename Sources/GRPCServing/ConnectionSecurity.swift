import GRPCCore
import NIOCore

/// What a `DirectHTTP2ServerTransport` needs to authenticate its connections (mutual TLS):
/// handlers for each accepted connection, and the connection's authenticated peer. Kept free of
/// certificates here; ClusterSecurity builds one from the cluster's material.
public struct ConnectionSecurity: Sendable {
    /// Adds the TLS handler (and whatever reads the peer's identity) to an accepted connection,
    /// ahead of HTTP/2; throwing refuses the connection.
    public var initializeConnection: @Sendable (any Channel) throws -> Void
    /// The connection's authenticated peer once its handshake has completed; it becomes every
    /// call's `ServerContext.transportSpecific`. A failed future closes the connection.
    public var identity: @Sendable (any Channel) -> EventLoopFuture<(any ServerContext.TransportSpecific)?>

    public init(initializeConnection: @escaping @Sendable (any Channel) throws -> Void,
                identity: @escaping @Sendable (any Channel) -> EventLoopFuture<(any ServerContext.TransportSpecific)?>) {
        self.initializeConnection = initializeConnection
        self.identity = identity
    }
}

extension DirectHTTP2ServerTransport.Configuration {
    /// Authenticates every connection with `security`, before `connectionInitializer` runs (so
    /// handlers that must see plain HTTP/2 bytes, such as a PING responder, come after TLS).
    public mutating func secure(with security: ConnectionSecurity) {
        let next = connectionInitializer
        connectionInitializer = { channel in
            try security.initializeConnection(channel)
            try next?(channel)
        }
        peerIdentity = security.identity
    }
}
