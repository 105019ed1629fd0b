import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Testing

@testable import RaftGRPC
import TestGate

/// Snapshots between two real transports on 127.0.0.1, in chunks: larger than any gRPC message
/// limit, interleaved with ordinary messages, and malformed sequences refused.
@Suite("Snapshot transfer over 127.0.0.1", .serialized, .heavy, .timeLimit(.minutes(4)))
struct SnapshotTransferTests {
    /// A snapshot of `bytes` patterned bytes (not a repeated block, so a misplaced chunk shows).
    static func snapshot(bytes: Int, index: UInt64 = 10) -> Snapshot {
        var image = [UInt8](repeating: 0, count: bytes)
        image.withUnsafeMutableBufferPointer { buffer in
            var state: UInt32 = 0x9E37_79B9
            for i in buffer.indices {
                state = state &* 1_664_525 &+ 1_013_904_223
                buffer[i] = UInt8(truncatingIfNeeded: state >> 24)
            }
        }
        return Snapshot(metadata: SnapshotMetadata(index: index, term: 1, confState: ConfState(voters: [1, 2])), data: image)
    }

    /// Sends `snapshot` from `a` to `b` followed by a heartbeat, and checks that the snapshot
    /// arrives identical and, with `heartbeatOvertakes`, that the heartbeat overtakes it (chunks
    /// take turns with batches). That needs chunks still queued when the heartbeat is sent: a
    /// snapshot of a few chunks may be written out whole before it (a CI run saw [42, 7] at 5 MiB).
    static func transfer(_ snapshot: Snapshot, from a: TestNode, to b: TestNode, heartbeatOvertakes: Bool = true) async throws {
        var probe = 1_000_000
        try await waitUntilConnected(a, b, probe: &probe)
        let sentBefore = a.transport.statistics.snapshotsSent
        a.transport.send([Message(kind: .snapshot, from: a.id, to: b.id, term: 1, commit: 42, snapshot: snapshot)])
        a.send(to: b.id, 7..<8)
        try await eventually("the snapshot arrived", timeout: .seconds(180)) { b.inbox.received(from: a.id).contains(42) }
        // Arrival order (the snapshot counts when its last chunk is in): the heartbeat went out
        // between two chunks instead of waiting behind them all.
        let order = b.inbox.received(from: a.id).filter { $0 == 7 || $0 == 42 }
        if heartbeatOvertakes {
            #expect(order == [7, 42], "the heartbeat waited behind the whole snapshot")
        } else {
            #expect(Set(order) == [7, 42] && order.count == 2)
        }
        let received = b.inbox.snapshots
        #expect(received.count == 1)
        #expect(received.first?.metadata == snapshot.metadata)
        #expect(received.first?.data.count == snapshot.data.count)
        // Compared outside #expect, which would render both arrays (hundreds of MiB) on failure.
        let firstDifference = Self.firstDifference(received.first?.data ?? [], snapshot.data)
        #expect(firstDifference == nil, "the snapshot's bytes arrived altered, from offset \(firstDifference ?? -1)")
        #expect(a.transport.statistics.snapshotsSent == sentBefore + 1)
        #expect(b.transport.statistics.snapshotsReceived == 1)
        #expect(b.transport.statistics.snapshotChunksRejected == 0)
    }

    /// The first offset where `a` and `b` differ (or where the shorter ends), nil when identical.
    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
        if a == b { return nil }
        return zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
    }

    @Test("a 100 MiB snapshot (over the 64 MiB message limit) arrives byte-identical, and a heartbeat sent after it overtakes it")
    func hundredMiB() async throws {
        let a = try await TestNode(id: 1)
        let b = try await TestNode(id: 2)
        a.connect(to: [b])
        try await Self.transfer(Self.snapshot(bytes: 100 << 20), from: a, to: b)
        try await a.stop()
        try await b.stop()
    }

    @Test("with maxMessageBytes at 1 MiB, a 5 MiB snapshot still arrives")
    func smallMessageLimit() async throws {
        var configuration = testConfiguration()
        configuration.maxMessageBytes = 1 << 20
        let a = try await TestNode(id: 1, configuration: configuration)
        let b = try await TestNode(id: 2, configuration: configuration)
        a.connect(to: [b])
        // Five chunks: the point is the message limit; overtaking is the 100 MiB test's.
        try await Self.transfer(Self.snapshot(bytes: 5 << 20), from: a, to: b, heartbeatOvertakes: false)
        try await a.stop()
        try await b.stop()
    }

    @Test("over mutual TLS, a 70 MiB snapshot arrives byte-identical")
    func overTLS() async throws {
        let tls = try RaftTLSTests.cluster("snapshot")
        let a = try await TestNode(id: 1, configuration: RaftTLSTests.configuration(tls, as: RaftTLSTests.master(1)))
        let b = try await TestNode(id: 2, configuration: RaftTLSTests.configuration(tls, as: RaftTLSTests.master(2)))
        a.connect(to: [b])
        try await Self.transfer(Self.snapshot(bytes: 70 << 20), from: a, to: b)
        try await a.stop()
        try await b.stop()
    }

    /// Opens node 1's Raft stream to `port` by hand and writes `batches`, then ends the stream.
    static func writeRaw(_ batches: [Raft_V1_MessageBatch], to port: Int) async throws {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            let stub = Raft_V1_RaftTransport.Client(wrapping: client)
            try await stub.stream(
                metadata: ["raft-from": "1"],
                requestProducer: { writer in
                    for batch in batches { try await writer.write(batch) }
                },
                onResponse: { response in
                    for try await _ in response.messages {}
                })
        }
    }

    static func batch(_ chunk: Raft_V1_SnapshotChunk) -> Raft_V1_MessageBatch {
        var batch = Raft_V1_MessageBatch()
        batch.snapshotChunk = chunk
        return batch
    }

    @Test("malformed chunk sequences on the wire are dropped and counted; a partial transfer is discarded when its stream ends")
    func malformedOnTheWire() async throws {
        let node = try await TestNode(id: 2)
        typealias T = SnapshotAssemblerTests
        let start = T.chunk(offset: 0, count: 1000)
        let sequences: [[Raft_V1_SnapshotChunk]] = [
            [start, T.chunk(offset: 2000, count: 1000)],  // a gap
            [start, T.chunk(offset: 500, count: 1000)],  // an overlap
            [start, T.chunk(T.message(index: 11), offset: 1000, count: 1000)],  // the index changed
            [T.chunk(offset: 0, count: 1000, total: 1500), T.chunk(offset: 1000, count: 1000, total: 1500)],  // past the total
            [start, T.chunk(T.message(from: 3), offset: 1000, count: 1000)],  // another sender
            [start],  // left partial: the stream ends
        ]
        try await Self.writeRaw(sequences.flatMap { $0 }.map(Self.batch), to: node.port)
        try await eventually("the partial transfer discarded at the stream's end") {
            node.transport.statistics.snapshotAssembliesDiscarded == 6
        }
        let stats = node.transport.statistics
        #expect(stats.snapshotChunksRejected == 5)
        #expect(stats.snapshotsReceived == 0 && stats.received == 0)
        #expect(node.inbox.snapshots.isEmpty)
        // The same stream's sender, well-behaved this time, gets its snapshot through.
        var outbound = OutboundSnapshot(T.message())
        var chunks: [Raft_V1_MessageBatch] = []
        for _ in 0..<10 where !outbound.isFinished { chunks.append(outbound.takeChunk(chunkBytes: 1024).encoded) }
        try await Self.writeRaw(chunks, to: node.port)
        try await eventually("the well-formed snapshot") { node.inbox.snapshots.count == 1 }
        #expect(node.inbox.snapshots == [T.message().snapshot!])
        try await node.stop()
    }
}
