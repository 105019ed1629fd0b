import GRPCCore
import GRPCServing
import Logging
import Raft
import SwiftProtobuf
import Synchronization

/// Where `run` leaves its handlers for the service (a class: `Mutex` cannot be copied with a struct).
final class HandlerSlot: Sendable {
    let value = Mutex<GRPCRaftTransport.Handlers?>(nil)
}

/// Counters the inbound service shares with the transport.
final class InboundCounters: Sendable {
    let received = Atomic<Int>(0)
    let rejected = Atomic<Int>(0)
}

/// The server side: one handler per inbound stream, i.e. per peer sending to us.
struct InboundService: Sendable {
    let id: NodeID
    let logger: Logger
    let counters: InboundCounters
    /// With TLS: the member an authenticated connection is (nil: not a member). Nil without TLS,
    /// where a stream's sender is what its header says.
    let member: (@Sendable (any ServerContext.TransportSpecific) -> NodeID?)?
    private let handlers = HandlerSlot()

    init(id: NodeID, logger: Logger, counters: InboundCounters,
         member: (@Sendable (any ServerContext.TransportSpecific) -> NodeID?)? = nil) {
        self.id = id
        self.logger = logger
        self.counters = counters
        self.member = member
    }

    func install(_ handlers: GRPCRaftTransport.Handlers) {
        self.handlers.value.withLock { $0 = handlers }
    }

    /// The Raft stream as a sink: the peer's hello answered at once, then each batch decoded,
    /// validated and handed to the node on the connection's event loop, in the order sent.
    ///
    /// One per connection: a peer sends on one stream (`PeerLink`), and a sink may hold a whole
    /// partial message (a snapshot, up to `maxMessageBytes`), so more streams on one connection
    /// would only multiply what one client can make us buffer.
    func sinkMethod() -> GRPCSinkMethod {
        let (id, counters, slot, baseLogger, member) = (self.id, self.counters, self.handlers, self.logger, self.member)
        return GRPCSinkMethod(maxCallsPerConnection: 1) { metadata, remotePeer, identity in
            var streamLogger = baseLogger
            streamLogger[metadataKey: "remote"] = "\(remotePeer)"
            let from = metadata[stringValues: "raft-from"].first(where: { _ in true })
            if let from { streamLogger[metadataKey: "peer"] = "\(from)" }
            let claimed = from.flatMap { NodeID($0) }
            // With TLS the sender is the member the certificate names, and every message on the
            // stream must come from it: otherwise one member (or a stolen member certificate)
            // could raise terms, append or install snapshots in another's name, or fake another's
            // stream closing to trigger elections.
            let authenticated: NodeID?
            if let member {
                guard let identity, let who = member(identity) else {
                    counters.rejected.add(1, ordering: .relaxed)
                    streamLogger.warning("raft stream refused: the peer's certificate is not a member's", metadata: ["identity": "\(identity.map { "\($0)" } ?? "none")"])
                    throw RPCError(code: .permissionDenied, message: "only the cluster's masters may open a raft stream")
                }
                guard claimed == nil || claimed == who else {
                    counters.rejected.add(1, ordering: .relaxed)
                    streamLogger.warning("raft stream refused: member \(who) claims to be \(from ?? "?")")
                    throw RPCError(code: .permissionDenied, message: "member \(who) may not open a raft stream as \(from ?? "?")")
                }
                authenticated = who
            } else {
                authenticated = nil
            }
            let sender = authenticated ?? claimed
            guard let handlers = slot.value.withLock({ $0 }) else {
                throw RPCError(code: .unavailable, message: "raft transport is not running")
            }
            // Hello first: the sender waits for it before sending anything.
            var ack = Raft_V1_StreamAck()
            ack.nodeID = id
            let hello: [UInt8] = try ack.serializedBytes()
            let logger = streamLogger
            logger.debug("raft inbound stream opened")
            let rejected = Atomic<Int>(0)
            return GRPCSinkCall(
                greeting: [hello],
                receive: { bytes in
                    let batch: Raft_V1_MessageBatch
                    do {
                        batch = try Raft_V1_MessageBatch(serializedBytes: bytes)
                    } catch {
                        counters.rejected.add(1, ordering: .relaxed)
                        logger.warning("raft batch dropped: undecodable", metadata: ["error": "\(error)"])
                        return
                    }
                    let (messages, errors) = WireCodec.decode(batch: batch, recipient: id, sender: authenticated)
                    for error in errors {
                        counters.rejected.add(1, ordering: .relaxed)
                        // The first few in full, then a sample: a broken peer must not flood the log.
                        let count = rejected.add(1, ordering: .relaxed).newValue
                        if count <= 10 || count.isMultiple(of: 1000) {
                            logger.warning("raft message dropped: malformed or forged",
                                           metadata: ["error": "\(error)", "rejectedOnStream": "\(count)"])
                        }
                    }
                    if !messages.isEmpty {
                        counters.received.add(messages.count, ordering: .relaxed)
                        handlers.onReceive(messages)
                    }
                },
                end: { error in
                    logger.debug("raft inbound stream closed by peer", metadata: ["error": "\(error.map { "\($0)" } ?? "-")"])
                    // The peer's stream ending (it died, or its connection broke) is the fastest
                    // sign that it may be gone: tell Raft, whose follower then pre-votes at once
                    // if it was the leader.
                    if let sender { handlers.onUnreachable(sender) }
                })
        }
    }
}
