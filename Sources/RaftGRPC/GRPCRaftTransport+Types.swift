import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Raft

extension GRPCRaftTransport {
    /// Mutual TLS, and who each member is (ClusterSecurity builds it from the cluster's
    /// material; this module stays free of certificates).
    public struct Security: Sendable {
        /// How the listen port authenticates its connections.
        public var server: ConnectionSecurity
        /// The Raft member an authenticated peer is; nil refuses its Raft stream.
        public var member: @Sendable (any ServerContext.TransportSpecific) -> NodeID?
        /// How this server connects to its peers (mutual TLS with its own certificate).
        public var client: HTTP2ClientTransport.Posix.TransportSecurity

        public init(server: ConnectionSecurity, member: @escaping @Sendable (any ServerContext.TransportSpecific) -> NodeID?,
                    client: HTTP2ClientTransport.Posix.TransportSecurity) {
            self.server = server
            self.member = member
            self.client = client
        }
    }

    /// Counters, for tests and metrics.
    public struct Statistics: Sendable, Equatable {
        /// Messages handed to the network.
        public var sent: Int
        /// Valid messages received and passed to `onReceive`.
        public var received: Int
        /// Received messages refused by validation.
        public var rejected: Int
        /// Messages dropped because the peer's queue was full (the oldest ones).
        public var droppedOverflow: Int
        /// Messages dropped because the peer was down, unknown, or the message too large.
        public var droppedUnreachable: Int
        /// Snapshot messages whose last chunk was handed to the network.
        public var snapshotsSent: Int = 0
        /// Snapshots reassembled from their chunks and passed to `onReceive`.
        public var snapshotsReceived: Int = 0
        /// Snapshot chunks refused: malformed (a gap, an overlap, a changed header, past the
        /// declared total), forged, over `maxSnapshotBytes`, or of a transfer refused or broken.
        public var snapshotChunksRejected: Int = 0
        /// Partial snapshot transfers dropped: their stream ended, a newer transfer replaced them,
        /// or one of their chunks was refused.
        public var snapshotAssembliesDiscarded: Int = 0
        /// Snapshot transfers refused at their first chunk because
        /// `maxConcurrentSnapshotAssemblies` were being reassembled already.
        public var snapshotAssembliesRefused: Int = 0
    }
}
