import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import Raft
import Synchronization

/// Errors of the transport itself (as opposed to ``WireError``, about what peers send).
public enum GRPCRaftTransportError: Error, Sendable, Equatable {
    /// `run` was called a second time: a transport serves once; make a new one to restart.
    case alreadyRun
    /// The listen address is not an IP address literal.
    case invalidListenAddress(String)
}

/// `RaftTransport` over gRPC: each server listens for its peers and keeps one long-lived
/// bidirectional stream open to each of them, on which it pushes batches of messages.
///
/// - Outbound, `send` appends to a bounded per-peer queue and returns at once. One task per peer
///   drains that queue, coalescing whatever is waiting into one `MessageBatch` per write (so a busy
///   leader pays one gRPC message per batch, not per Raft message), and reopens the stream with
///   exponential backoff and jitter when it breaks.
/// - When a peer's queue is full, its **oldest** message is dropped: queued Raft messages only
///   grow staler (old commit index, old term), the leader re-sends whatever a follower misses, and
///   dropping the newest would deliver the stale backlog while losing the one message reflecting
///   the leader's current state.
/// - Inbound, every batch is decoded and validated (``WireCodec``) on the connection's event loop,
///   as `DirectHTTP2ServerTransport` hands it over; malformed messages are dropped and logged, the
///   rest go to `onReceive` in the order the peer sent them.
///
/// - Snapshots travel in chunks (``Configuration/snapshotChunkBytes``) on the same stream, taking
///   turns with the ordinary batches, and the receiver reassembles them (one transfer per stream,
///   at most ``Configuration/maxConcurrentSnapshotAssemblies`` over all streams, each at most
///   ``Configuration/maxSnapshotBytes``) before Raft sees the whole message: a snapshot's size is
///   not limited by the gRPC message limit. A transfer cut short (the stream broke, a newer
///   snapshot replaced it, a chunk was malformed) is discarded whole; Raft sends it again.
///
/// Ordering holds per peer while a stream lives, except that a snapshot arrives when its last
/// chunk does, after messages sent later (Raft tolerates reordering; only the snapshot's own
/// chunks must keep theirs). Across a reconnect, messages are lost rather than reordered.
/// Messages to a peer known to be down are dropped (Raft re-sends).
///
/// The peer set can change at runtime (`setPeer`, `removePeer`), as membership changes do.
public final class GRPCRaftTransport: RaftTransport {
    /// Tunables; the defaults suit a three to five node cluster on a LAN.
    public struct Configuration: Sendable {
        /// Messages queued per peer before the oldest are dropped.
        public var queueCapacity = 4096
        /// Bytes (estimated) queued per peer before the oldest are dropped.
        public var maxQueuedBytes = 64 << 20
        /// Most messages coalesced into one batch.
        public var maxBatchMessages = 1024
        /// Most bytes (estimated) coalesced into one batch; a bigger message travels alone.
        public var maxBatchBytes = 1 << 20
        /// Largest single message accepted for sending and on receipt, snapshots excepted: they
        /// travel in chunks (`snapshotChunkBytes`) whatever their size. What remains large is an
        /// append carrying a large entry.
        public var maxMessageBytes = 64 << 20
        /// Bytes of snapshot data per chunk. Each chunk is one gRPC message, so a smaller chunk
        /// lets ordinary messages (which take turns with the chunks) through sooner. Just under
        /// 1 MiB so that a chunk stays below the listen port's threshold for large partial
        /// messages (which touch a counter shared by all connections at every frame). Every
        /// member must accept the others' chunks: keep it below their `maxMessageBytes`.
        public var snapshotChunkBytes = (1 << 20) - (8 << 10)
        /// Largest snapshot accepted on receipt (and sent): a transfer declaring more is refused
        /// at its first chunk. The store lives in memory, so its snapshot does too; this only stops
        /// a peer from making us buffer without end.
        public var maxSnapshotBytes = 16 << 30
        /// Snapshot transfers reassembled at once over all inbound streams (a stream carries one
        /// at a time). Two: one from the leader, one from a leader deposed mid-transfer whose
        /// stream has not ended yet. A transfer beyond it is refused (logged, counted in
        /// `Statistics.snapshotAssembliesRefused`) and the leader sends the snapshot again later.
        public var maxConcurrentSnapshotAssemblies = 2
        /// Connections the listen port accepts at once: the other masters (a stream and a
        /// forwarding client each), and the workers when the master serves its worker protocol on
        /// the same port. More are closed as they are accepted.
        public var maxConnections = 512
        /// Streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). A peer's Raft traffic is one
        /// stream; a master's forwarded writes and a worker's calls are a few more each.
        public var maxConcurrentStreams = 128
        /// Bytes of large partial gRPC messages (over 1 MiB each) the listen port holds at once,
        /// over all connections: appends with large entries, forwarded writes and worker calls
        /// (snapshot chunks stay under the threshold; their reassembly is bounded by
        /// `maxConcurrentSnapshotAssemblies` and `maxSnapshotBytes`). Two messages of
        /// `maxMessageBytes`. A stream whose message would pass it is refused and its sender retries.
        public var maxBufferedLargeMessageBytes = 2 * (64 << 20) + (4 << 20)
        /// Delay between attempts to reopen a stream.
        public var backoff = BackoffPolicy.raftDefault
        /// Seed of the jitter generator; nil derives one from the node id (distinct per node,
        /// reproducible per run).
        public var randomSeed: UInt64?
        /// HTTP/2 keepalive: how often an idle connection is pinged, and how long a ping may go
        /// unanswered before the connection is declared dead. This is what notices a peer that
        /// vanished without closing its sockets (power loss, partition).
        public var keepaliveInterval: Duration = .seconds(10)
        public var keepaliveTimeout: Duration = .seconds(5)
        /// Mutual TLS on the port and to the peers; nil: plain text, and a stream's sender is
        /// what its header says.
        public var security: Security?

        public init() {}
    }

    private struct State {
        var links: [NodeID: PeerLink] = [:]
        /// Set while `run` runs: new links are handed to it to start their sender task.
        var newLinks: AsyncStream<PeerLink>.Continuation?
        var hasRun = false
    }

    /// Handed from `run` to the inbound service and the sender tasks.
    struct Handlers: Sendable {
        let onReceive: @Sendable ([Message]) -> Void
        let onUnreachable: @Sendable (NodeID) -> Void
    }

    /// This server's id.
    public let id: NodeID
    // Internal rather than private: GRPCRaftTransport+PeerStreams.swift uses them.
    let configuration: Configuration
    let logger: Logger
    private let state = Mutex(State())
    private let serverTransport: DirectHTTP2ServerTransport
    /// Whether `run` serves the listen port itself, or its owner does with ``serve(with:)``.
    private let servesPort: Bool
    private let service: InboundService
    private let listenAddress: PeerAddress
    private let listenError: GRPCRaftTransportError?

    let sentCount = Atomic<Int>(0)
    let snapshotsSentCount = Atomic<Int>(0)
    private let droppedOverflowCount = Atomic<Int>(0)
    let droppedUnreachableCount = Atomic<Int>(0)
    let counters = InboundCounters()

    /// Creates a transport; nothing listens or connects until `run`.
    ///
    /// - Parameters:
    ///   - id: this server's id; messages addressed elsewhere are refused on receipt.
    ///   - listen: the address to listen on: an IPv4 or IPv6 literal (`0.0.0.0`, `::`), or
    ///     `localhost`; port 0 picks a free port (see ``listeningPort``).
    ///   - peers: where the other servers listen; an entry for `id` itself is ignored, so the
    ///     cluster's full peer list can be passed as is. Host names are resolved with DNS.
    ///   - logger: where connection changes and dropped or malformed messages are reported.
    ///   - configuration: tunables.
    ///   - servesPort: true (the default) for `run` to serve the listen port, with Raft's stream
    ///     only. False when the owner serves more on the same port (a master adds write forwarding
    ///     and the worker protocol, which need the store that needs the Raft node that needs this
    ///     transport): the owner then calls ``serve(with:)`` once everything exists, and the
    ///     construction runs in one direction.
    public init(
        id: NodeID,
        listen: (host: String, port: Int),
        peers: [NodeID: (host: String, port: Int)],
        logger: Logger,
        configuration: Configuration = Configuration(),
        servesPort: Bool = true
    ) {
        self.id = id
        self.servesPort = servesPort
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "raft-node"] = "\(id)"
        self.logger = logger
        self.listenAddress = PeerAddress(host: listen.host, port: listen.port)

        let listenHost: String
        switch Self.listenSocketAddress(listenAddress) {
        case .success(let host):
            listenHost = host
            listenError = nil
        case .failure(let error):
            // Reported by `run`, which can throw; an initializer that throws would be awkward
            // for a value that is otherwise plain configuration.
            listenHost = "127.0.0.1"
            listenError = error
        }

        service = InboundService(id: id, logger: logger, counters: counters, member: configuration.security?.member,
                                 maxSnapshotBytes: configuration.maxSnapshotBytes,
                                 snapshotBudget: SnapshotAssemblyBudget(limit: configuration.maxConcurrentSnapshotAssemblies))
        // Raft's stream is served on the connection's event loop (a sink: each batch is decoded
        // and handed to the node there, with no task, async sequence or executor per call, which
        // were most of a follower's CPU under load); the other services through grpc-swift's router.
        var transportConfiguration = DirectHTTP2ServerTransport.Configuration()
        // A batch is at most maxBatchBytes, or one message of up to maxMessageBytes, or one
        // snapshot chunk; the estimate is generous but leave headroom so an honest peer is never refused.
        transportConfiguration.maxRequestMessageBytes =
            max(configuration.maxMessageBytes, configuration.maxBatchBytes, configuration.snapshotChunkBytes) + (1 << 20)
        // Before any authentication, a client can then make this port hold: per connection one
        // partial message (one sink each) up to the message limit, and over all connections the
        // budget of large partial messages; whole messages waiting for a routed service stay
        // within each stream's window (the service re-opens it as it reads). Snapshot assemblies
        // come on top: at most maxConcurrentSnapshotAssemblies of maxSnapshotBytes, from streams
        // that passed authentication (with TLS, members only).
        transportConfiguration.maxConnections = configuration.maxConnections
        transportConfiguration.maxConcurrentStreams = configuration.maxConcurrentStreams
        transportConfiguration.maxBufferedBytesPerConnection = transportConfiguration.maxRequestMessageBytes + (1 << 20)
        transportConfiguration.maxBufferedBytes = max(configuration.maxBufferedLargeMessageBytes,
                                                      transportConfiguration.maxRequestMessageBytes)
        if let security = configuration.security { transportConfiguration.secure(with: security.server) }
        transportConfiguration.sinkMethods = [
            "/" + Raft_V1_RaftTransport.Method.Stream.descriptor.fullyQualifiedMethod: service.sinkMethod()
        ]
        serverTransport = DirectHTTP2ServerTransport(
            host: listenHost, port: listenError == nil ? listenAddress.port : 0, configuration: transportConfiguration)

        for (peer, address) in peers where peer != id {
            _ = installLink(peer: peer, address: PeerAddress(host: address.host, port: address.port))
        }
    }

    // MARK: Peers

    /// Adds a peer or changes its address. Messages already queued for it are kept; a stream open
    /// to its old address is closed. Ignored for this server's own id.
    public func setPeer(_ peer: NodeID, host: String, port: Int) {
        guard peer != id, peer != noNode else { return }
        if installLink(peer: peer, address: PeerAddress(host: host, port: port)) {
            logger.info("raft peer set", metadata: ["peer": "\(peer)", "address": "\(host):\(port)"])
        }
    }

    /// Forgets a peer: its queue is dropped, its stream closed, and later messages to it dropped.
    public func removePeer(_ peer: NodeID) {
        let link = state.withLock { $0.links.removeValue(forKey: peer) }
        if let link {
            let dropped = link.close().count
            droppedUnreachableCount.add(dropped, ordering: .relaxed)
            logger.info("raft peer removed", metadata: ["peer": "\(peer)"])
        }
    }

    /// The peers currently known, with their addresses.
    public var peers: [NodeID: (host: String, port: Int)] {
        state.withLock { state in
            state.links.mapValues { ($0.address.host, $0.address.port) }
        }
    }

    /// Returns false when the peer already had this address.
    private func installLink(peer: NodeID, address: PeerAddress) -> Bool {
        let limits = PeerLink.Limits(
            capacity: max(configuration.queueCapacity, 1),
            maxQueuedBytes: configuration.maxQueuedBytes,
            maxBatchMessages: max(configuration.maxBatchMessages, 1),
            maxBatchBytes: configuration.maxBatchBytes
        )
        return state.withLock { state in
            let old = state.links[peer]
            if let old, old.address == address { return false }
            // Closing under our lock makes the hand-over atomic for `send`: it finds either the
            // old link (and its messages move here) or the new one.
            let pending = old?.close() ?? []
            let link = PeerLink(peer: peer, address: address, limits: limits, pending: pending)
            state.links[peer] = link
            state.newLinks?.yield(link)
            return true
        }
    }

    // MARK: RaftTransport

    /// Queues each message for its recipient's sender task; never waits. Messages to unknown
    /// peers, to a peer known to be down, or larger than `maxMessageBytes` (snapshots: larger than
    /// `maxSnapshotBytes`) are dropped.
    public func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        // Group by recipient under one lock acquisition, keeping each recipient's order.
        var groups: [(link: PeerLink, messages: [Message])] = []
        var unknown = 0
        var oversized = 0
        state.withLock { state in
            for message in messages {
                guard let link = state.links[message.to] else {
                    unknown += 1
                    continue
                }
                let tooLarge = message.kind == .snapshot
                    ? (message.snapshot?.data.count ?? 0) > configuration.maxSnapshotBytes
                    : message.estimatedWireSize > configuration.maxMessageBytes
                if tooLarge {
                    oversized += 1
                    continue
                }
                if let index = groups.firstIndex(where: { $0.link === link }) {
                    groups[index].messages.append(message)
                } else {
                    groups.append((link, [message]))
                }
            }
        }
        var droppedUnreachable = unknown + oversized
        for (link, batch) in groups {
            let result = link.enqueue(batch)
            droppedUnreachable += result.droppedUnreachable
            if result.droppedOverflow > 0 {
                droppedOverflowCount.add(result.droppedOverflow, ordering: .relaxed)
            }
            if result.supersededSnapshot {
                logger.info("raft snapshot to peer superseded by a newer one mid-transfer", metadata: ["peer": "\(link.peer)"])
            }
            if result.startedOverflowing {
                logger.warning(
                    "raft peer queue full, dropping oldest messages",
                    metadata: ["peer": "\(link.peer)", "capacity": "\(configuration.queueCapacity)"])
            }
        }
        if droppedUnreachable > 0 {
            droppedUnreachableCount.add(droppedUnreachable, ordering: .relaxed)
        }
        if unknown > 0 {
            logger.debug("raft messages to unknown peers dropped", metadata: ["count": "\(unknown)"])
        }
        if oversized > 0 {
            logger.error(
                "raft messages larger than maxMessageBytes (snapshots: maxSnapshotBytes) dropped",
                metadata: ["count": "\(oversized)", "limit": "\(configuration.maxMessageBytes)",
                           "snapshotLimit": "\(configuration.maxSnapshotBytes)"])
        }
    }

    /// Serves peers (unless the owner does: `servesPort`) and drives the outbound streams until
    /// the calling task is cancelled, then closes every stream and the listener before returning.
    /// Call it once per transport.
    ///
    /// - Throws: ``GRPCRaftTransportError`` when called twice or when the listen address is
    ///   invalid; a gRPC `RuntimeError` when the port cannot be bound.
    public func run(
        onReceive: @escaping @Sendable ([Message]) -> Void,
        onUnreachable: @escaping @Sendable (NodeID) -> Void
    ) async throws {
        if let listenError { throw listenError }
        let handlers = Handlers(onReceive: onReceive, onUnreachable: onUnreachable)
        let (newLinks, newLinksContinuation) = AsyncStream.makeStream(of: PeerLink.self)
        let initialLinks = try state.withLock { state in
            guard !state.hasRun else { throw GRPCRaftTransportError.alreadyRun }
            state.hasRun = true
            state.newLinks = newLinksContinuation
            return Array(state.links.values)
        }
        service.install(handlers)
        defer {
            state.withLock { $0.newLinks = nil }
            newLinksContinuation.finish()
        }
        logger.info("raft transport starting", metadata: ["listen": "\(listenAddress)"])

        try await withThrowingDiscardingTaskGroup { group in
            if servesPort {
                group.addTask {
                    // If the server stops (it cannot bind, say), end the loop below so that `run`
                    // returns its error instead of waiting for a cancellation.
                    defer { newLinksContinuation.finish() }
                    try await self.serve(with: [])
                }
            }
            for link in initialLinks {
                group.addTask { await self.runLink(link, handlers: handlers) }
            }
            // Ends when `run`'s task is cancelled or the server stops.
            for await link in newLinks {
                group.addTask { await self.runLink(link, handlers: handlers) }
            }
            group.cancelAll()
        }
        logger.info("raft transport stopped")
    }

    /// Serves the listen port, Raft's stream on the connections' event loops and `services`
    /// through grpc-swift's router, until the calling task is cancelled; then sends GOAWAY, allows
    /// a short grace and closes every connection. Call it once: `run` does for a transport that
    /// serves its own port, the owner does otherwise (see `servesPort`). Raft messages that arrive
    /// before `run` installed its handlers are dropped, as any lost message is.
    ///
    /// - Throws: ``GRPCRaftTransportError`` when the listen address is invalid; a gRPC
    ///   `RuntimeError` when the port cannot be bound.
    public func serve(with services: [any RegistrableRPCService]) async throws {
        if let listenError { throw listenError }
        try await GRPCServer(transport: serverTransport, services: services).serve()
    }

    /// The port the server listens on, once it does (useful with port 0). Call while it serves.
    public var listeningPort: Int {
        get async throws {
            try await serverTransport.listeningPort
        }
    }

    /// The listen port's limits (connections and streams refused, bytes held), for metrics.
    public var serverStatistics: DirectHTTP2ServerTransport.Statistics {
        serverTransport.statistics
    }

    /// Counters since creation.
    public var statistics: Statistics {
        Statistics(
            sent: sentCount.load(ordering: .relaxed),
            received: counters.received.load(ordering: .relaxed),
            rejected: counters.rejected.load(ordering: .relaxed),
            droppedOverflow: droppedOverflowCount.load(ordering: .relaxed),
            droppedUnreachable: droppedUnreachableCount.load(ordering: .relaxed),
            snapshotsSent: snapshotsSentCount.load(ordering: .relaxed),
            snapshotsReceived: counters.snapshotsReceived.load(ordering: .relaxed),
            snapshotChunksRejected: counters.snapshotChunksRejected.load(ordering: .relaxed),
            snapshotAssembliesDiscarded: counters.snapshotAssembliesDiscarded.load(ordering: .relaxed),
            snapshotAssembliesRefused: counters.snapshotAssembliesRefused.load(ordering: .relaxed)
        )
    }

    // MARK: Addresses

    /// The host literal to listen on (`localhost` becomes 127.0.0.1), or why the address is unusable.
    private static func listenSocketAddress(_ address: PeerAddress) -> Result<String, GRPCRaftTransportError> {
        let host = address.host == "localhost" ? "127.0.0.1" : address.host
        guard (0...65535).contains(address.port), isIPv4Literal(host) || host.contains(":") else {
            return .failure(.invalidListenAddress("\(address)"))
        }
        return .success(host)
    }

    static func target(for address: PeerAddress) -> any ResolvableTarget {
        if isIPv4Literal(address.host) { return .ipv4(address: address.host, port: address.port) }
        if address.host.contains(":") { return .ipv6(address: address.host, port: address.port) }
        return .dns(host: address.host, port: address.port)
    }

    private static func isIPv4Literal(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
