import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import Raft
import Synchronization

// The outbound side: one sender task per peer keeps a stream open to it, reconnecting with
// backoff, and writes the batches its `PeerLink` coalesces.
extension GRPCRaftTransport {
    /// Runs the sender of one link until the link is closed or the task cancelled.
    func runLink(_ link: PeerLink, handlers: Handlers) async {
        await withTaskGroup(of: Void.self) { group in
            // Racing the closed latch interrupts an attempt stuck connecting or writing as soon
            // as the peer is removed or re-addressed.
            group.addTask { await link.closedLatch.wait() }
            group.addTask { await self.driveLink(link, handlers: handlers) }
            await group.next()
            group.cancelAll()
        }
    }

    private func driveLink(_ link: PeerLink, handlers: Handlers) async {
        let seed = (configuration.randomSeed ?? id &* 0x9E37_79B9_7F4A_7C15) ^ (link.peer &* 0xBF58_476D_1CE4_E5B9)
        var backoff = Backoff(policy: configuration.backoff, seed: seed)
        var logger = self.logger
        logger[metadataKey: "peer"] = "\(link.peer)"
        logger[metadataKey: "address"] = "\(link.address)"

        while !Task.isCancelled, !link.isClosed {
            let (established, error) = await attempt(link, logger: logger)
            if Task.isCancelled || link.isClosed { return }
            if established { backoff.reset() }
            let (newOutage, dropped) = link.markDown()
            droppedUnreachableCount.add(dropped, ordering: .relaxed)
            if newOutage {
                logger.warning(
                    established ? "raft stream to peer broke" : "raft peer unreachable",
                    metadata: ["error": "\(error.map { "\($0)" } ?? "stream ended")", "dropped": "\(dropped)"])
                handlers.onUnreachable(link.peer)
            } else {
                logger.debug("raft reconnect failed", metadata: ["error": "\(error.map { "\($0)" } ?? "-")"])
            }
            do {
                try await Task.sleep(for: backoff.next())
            } catch {
                return
            }
        }
    }

    /// One connection attempt: opens a stream, waits for the peer's hello, then forwards batches
    /// until the stream breaks or the task is cancelled. Returns whether the stream was ever
    /// established, and why it ended.
    private func attempt(_ link: PeerLink, logger: Logger) async -> (established: Bool, error: (any Error)?) {
        let hello = Latch()
        let selfID = id
        var options = CallOptions.defaults
        // Fail fast when the peer cannot be reached: our own backoff decides when to retry.
        options.waitForReady = false
        do {
            let transport = try HTTP2ClientTransport.Posix(
                target: Self.target(for: link.address),
                transportSecurity: configuration.security?.client ?? .plaintext,
                config: .defaults { config in
                    config.connection.keepalive = .init(
                        time: configuration.keepaliveInterval,
                        timeout: configuration.keepaliveTimeout,
                        allowWithoutCalls: true)
                    // One attempt per client; reconnecting is our loop's job, not the channel's.
                    config.backoff = .init(
                        initial: configuration.backoff.initial, max: configuration.backoff.maximum,
                        multiplier: configuration.backoff.multiplier, jitter: configuration.backoff.jitter)
                }
            )
            try await withGRPCClient(transport: transport) { client in
                let stub = Raft_V1_RaftTransport.Client(wrapping: client)
                try await stub.stream(
                    metadata: ["raft-from": "\(selfID)"],
                    options: options,
                    requestProducer: { writer in
                        // Nothing goes out before the peer proved who it is.
                        await hello.wait()
                        guard hello.isFired else { return }
                        var transferStart = ContinuousClock.now
                        while let write = await link.nextWrite() {
                            switch write {
                            case .batch(let batch):
                                try await writer.write(WireCodec.encode(batch: batch))
                                self.sentCount.add(batch.count, ordering: .relaxed)
                            case .chunk(let chunk):
                                if chunk.range.lowerBound == 0 {
                                    transferStart = ContinuousClock.now
                                    logger.info("raft snapshot transfer to peer starting", metadata: [
                                        "index": "\(chunk.header.snapshot.metadata.index)", "bytes": "\(chunk.data.count)"])
                                }
                                try await writer.write(chunk.encoded)
                                if chunk.isLast {
                                    self.sentCount.add(1, ordering: .relaxed)
                                    self.snapshotsSentCount.add(1, ordering: .relaxed)
                                    logger.info("raft snapshot sent to peer", metadata: [
                                        "index": "\(chunk.header.snapshot.metadata.index)", "bytes": "\(chunk.data.count)",
                                        "duration": "\(ContinuousClock.now - transferStart)"])
                                }
                            }
                        }
                    },
                    onResponse: { response in
                        for try await ack in response.messages where !hello.isFired {
                            guard ack.nodeID == link.peer else {
                                throw PeerMismatch(expected: link.peer, got: ack.nodeID)
                            }
                            link.markUp()
                            hello.fire()
                            logger.info("raft stream to peer established")
                        }
                        throw StreamEnded()
                    }
                )
            }
            return (hello.isFired, nil)
        } catch {
            return (hello.isFired, error)
        }
    }
}

/// The hello came from another node than the one this address belongs to.
struct PeerMismatch: Error, CustomStringConvertible {
    let expected: NodeID
    let got: NodeID
    var description: String { "address belongs to node \(got), expected node \(expected)" }
}

/// The peer closed the stream (it is shutting down).
struct StreamEnded: Error, CustomStringConvertible {
    var description: String { "peer closed the stream" }
}
