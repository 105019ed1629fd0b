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
    let snapshotsReceived = Atomic<Int>(0)
    let snapshotChunksRejected = Atomic<Int>(0)
    let snapshotAssembliesDiscarded = Atomic<Int>(0)
    let snapshotAssembliesRefused = Atomic<Int>(0)
}

/// The server side: one handler per inbound stream, i.e. per peer sending to us.
struct InboundService: Sendable {
    let id: NodeID
    let logger: Logger
    let counters: InboundCounters
    /// With TLS: the member an authenticated connection is (nil: not a member). Nil without TLS,
    /// where a stream's sender is what its header says.
    let member: (@Sendable (any ServerContext.TransportSpecific) -> NodeID?)?
    /// Snapshot transfers: the largest accepted, and the assemblies held at once over all streams.
    let maxSnapshotBytes: Int
    let snapshotBudget: SnapshotAssemblyBudget
    private let handlers = HandlerSlot()

    init(id: NodeID, logger: Logger, counters: InboundCounters,
         member: (@Sendable (any ServerContext.TransportSpecific) -> NodeID?)? = nil,
         maxSnapshotBytes: Int = 16 << 30, snapshotBudget: SnapshotAssemblyBudget = SnapshotAssemblyBudget(limit: 2)) {
        self.id = id
        self.logger = logger
        self.counters = counters
        self.member = member
        self.maxSnapshotBytes = maxSnapshotBytes
        self.snapshotBudget = snapshotBudget
    }

    func install(_ handlers: GRPCRaftTransport.Handlers) {
        self.handlers.value.withLock { $0 = handlers }
    }

    /// The Raft stream as a sink: the peer's hello answered at once, then each batch decoded,
    /// validated and handed to the node on the connection's event loop, in the order sent.
    ///
    /// One per connection: a peer sends on one stream (`PeerLink`), and a stream may hold a
    /// partial message (up to `maxMessageBytes`) and a partial snapshot transfer, so more streams
    /// on one connection would only multiply what one client can make us buffer.
    func sinkMethod() -> GRPCSinkMethod {
        let (id, counters, slot, baseLogger, member) = (self.id, self.counters, self.handlers, self.logger, self.member)
        let (maxSnapshotBytes, snapshotBudget) = (self.maxSnapshotBytes, self.snapshotBudget)
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
            let assembly = StreamSnapshotAssembly(SnapshotAssembler(
                recipient: id, sender: authenticated, maxSnapshotBytes: maxSnapshotBytes, budget: snapshotBudget))
            let chunks = ChunkReceiver(assembly: assembly, counters: counters, logger: logger)
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
                    if batch.hasSnapshotChunk, let snapshot = chunks.receive(batch.snapshotChunk) {
                        counters.received.add(1, ordering: .relaxed)
                        handlers.onReceive([snapshot])
                    }
                },
                end: { error in
                    logger.debug("raft inbound stream closed by peer", metadata: ["error": "\(error.map { "\($0)" } ?? "-")"])
                    chunks.streamEnded()
                    // The peer's stream ending (it died, or its connection broke) is the fastest
                    // sign that it may be gone: tell Raft, whose follower then pre-votes at once
                    // if it was the leader.
                    if let sender { handlers.onUnreachable(sender) }
                })
        }
    }
}

/// The snapshot chunks of one inbound stream: reassembly, counters and logs.
final class ChunkReceiver: Sendable {
    let assembly: StreamSnapshotAssembly
    let counters: InboundCounters
    let logger: Logger
    /// Start of the transfer under way, for the log line of its end.
    private let started = Mutex<ContinuousClock.Instant?>(nil)
    /// Chunks refused on this stream, to log the first few in full and then a sample.
    private let refusals = Atomic<Int>(0)

    init(assembly: StreamSnapshotAssembly, counters: InboundCounters, logger: Logger) {
        self.assembly = assembly
        self.counters = counters
        self.logger = logger
    }

    /// Takes one chunk; returns the whole snapshot message when this chunk completed it.
    func receive(_ chunk: Raft_V1_SnapshotChunk) -> RaftMessage? {
        var abandoned = false
        let outcome: SnapshotAssembler.Outcome
        do throws(SnapshotChunkError) {
            outcome = try assembly.accept(chunk, abandoned: &abandoned)
        } catch {
            if abandoned { discarded("a new transfer began") }
            counters.snapshotChunksRejected.add(1, ordering: .relaxed)
            // Counted always, logged in full for the first few per stream, then sampled: a broken
            // peer must not flood the log.
            if error.brokeTransferUnderWay { discarded("a chunk was refused", log: false) }
            if case .tooManyAssemblies = error { counters.snapshotAssembliesRefused.add(1, ordering: .relaxed) }
            let count = refusals.add(1, ordering: .relaxed).newValue
            guard count <= 10 || count.isMultiple(of: 1000) else { return nil }
            let metadata: Logger.Metadata = ["error": "\(error)", "index": "\(chunk.header.snapshot.metadata.index)",
                                             "offset": "\(chunk.offset)", "declaredBytes": "\(chunk.totalBytes)",
                                             "rejectedOnStream": "\(count)"]
            switch error {
            case .tooManyAssemblies:
                logger.warning("raft snapshot refused: too many snapshots being received at once; the leader will send it again", metadata: metadata)
            case .tooLarge:
                logger.error("raft snapshot refused: larger than maxSnapshotBytes", metadata: metadata)
            case .changedHeader, .notContiguous, .pastDeclaredTotal, .emptyChunk:
                logger.warning("raft snapshot chunk dropped: malformed or forged; the transfer under way is discarded", metadata: metadata)
            case .invalidHeader, .noTransfer:
                logger.warning("raft snapshot chunk dropped: malformed or forged", metadata: metadata)
            }
            return nil
        }
        if abandoned { discarded("a new transfer began") }
        if chunk.offset == 0 {
            started.withLock { $0 = .now }
            logger.debug("raft snapshot transfer from peer started",
                         metadata: ["index": "\(chunk.header.snapshot.metadata.index)", "bytes": "\(chunk.totalBytes)"])
        }
        switch outcome {
        case .partial:
            return nil
        case .skipped:
            counters.snapshotChunksRejected.add(1, ordering: .relaxed)
            return nil
        case .complete(let message):
            counters.snapshotsReceived.add(1, ordering: .relaxed)
            let since = started.withLock { $0 }
            logger.info("raft snapshot received", metadata: [
                "index": "\(message.snapshot?.metadata.index ?? 0)", "term": "\(message.snapshot?.metadata.term ?? 0)",
                "bytes": "\(message.snapshot?.data.count ?? 0)", "duration": "\(since.map { ContinuousClock.now - $0 } ?? .zero)"])
            return message
        }
    }

    /// The stream ended: a partial transfer can never complete.
    func streamEnded() {
        let (wasAssembling, bytes) = assembly.discard()
        if wasAssembling { discarded("the stream ended", bytes: bytes) }
    }

    private func discarded(_ why: String, bytes: Int? = nil, log: Bool = true) {
        counters.snapshotAssembliesDiscarded.add(1, ordering: .relaxed)
        guard log else { return }
        var metadata: Logger.Metadata = ["reason": "\(why)"]
        if let bytes { metadata["receivedBytes"] = "\(bytes)" }
        logger.info("raft snapshot transfer discarded before completion", metadata: metadata)
    }
}
