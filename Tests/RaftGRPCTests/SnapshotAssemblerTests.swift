import Foundation
import Raft
import Testing

@testable import RaftGRPC

/// The receiver's reassembly of snapshot chunks and the sender's cutting, without a network.
@Suite("Snapshot chunks: cutting and reassembly")
struct SnapshotAssemblerTests {
    static let image: [UInt8] = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }

    static func message(index: UInt64 = 10, from: NodeID = 1, data: [UInt8] = image) -> Message {
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: 2, confState: ConfState(voters: [1, 2])), data: data)
        return Message(kind: .snapshot, from: from, to: 2, term: 3, snapshot: snapshot)
    }

    /// A chunk of `message`'s data at `offset`, `count` bytes long; `total` overrides the declared size.
    static func chunk(_ message: Message = message(), offset: Int, count: Int, total: Int? = nil) -> Raft_V1_SnapshotChunk {
        let data = message.snapshot!.data
        var chunk = Raft_V1_SnapshotChunk()
        chunk.header = OutboundSnapshot(message).header
        chunk.totalBytes = UInt64(total ?? data.count)
        chunk.offset = UInt64(offset)
        let end = min(offset + count, data.count)
        if offset < end { chunk.data = Data(data[offset..<end]) }
        return chunk
    }

    static func assembler(sender: NodeID? = nil, maxSnapshotBytes: Int = 1 << 20,
                          budget: SnapshotAssemblyBudget = SnapshotAssemblyBudget(limit: 2)) -> SnapshotAssembler {
        SnapshotAssembler(recipient: 2, sender: sender, maxSnapshotBytes: maxSnapshotBytes, budget: budget)
    }

    /// Feeds `chunks`, returning each outcome or error.
    static func feed(_ assembler: inout SnapshotAssembler, _ chunks: [Raft_V1_SnapshotChunk]) -> [Result<SnapshotAssembler.Outcome, SnapshotChunkError>] {
        chunks.map { (chunk) -> Result<SnapshotAssembler.Outcome, SnapshotChunkError> in
            var abandoned = false
            do throws(SnapshotChunkError) {
                return .success(try assembler.accept(chunk, abandoned: &abandoned))
            } catch {
                return .failure(error)
            }
        }
    }

    @Test("the sender's chunks reassemble into the identical message, and the budget slot is released")
    func roundTrip() {
        var outbound = OutboundSnapshot(Self.message())
        var chunks: [Raft_V1_SnapshotChunk] = []
        for _ in 0..<10 where !outbound.isFinished {
            chunks.append(outbound.takeChunk(chunkBytes: 1024).encoded.snapshotChunk)
        }
        #expect(chunks.map(\.offset) == [0, 1024, 2048])
        let budget = SnapshotAssemblyBudget(limit: 1)
        var assembler = Self.assembler(budget: budget)
        let outcomes = Self.feed(&assembler, chunks)
        #expect(outcomes.dropLast().allSatisfy { $0 == .success(.partial) })
        #expect(outcomes.last == .success(.complete(Self.message())))
        #expect(budget.assembling == 0 && !assembler.isAssembling)

        // An empty snapshot is one empty chunk.
        var empty = OutboundSnapshot(Self.message(data: []))
        let only = empty.takeChunk(chunkBytes: 1024)
        #expect(only.isLast && empty.isFinished)
        #expect(Self.feed(&assembler, [only.encoded.snapshotChunk]) == [.success(.complete(Self.message(data: [])))])
    }

    @Test("malformed sequences are refused, the transfer under way discarded, and its later chunks skipped",
          arguments: [
              Malformed(name: "gap", chunks: [SnapshotAssemblerTests.chunk(offset: 2000, count: 1000)], expected: .notContiguous(expected: 1000, got: 2000)),
              Malformed(name: "overlap", chunks: [SnapshotAssemblerTests.chunk(offset: 500, count: 1000)], expected: .notContiguous(expected: 1000, got: 500)),
              Malformed(name: "changed index", chunks: [SnapshotAssemblerTests.chunk(SnapshotAssemblerTests.message(index: 11), offset: 1000, count: 1000)], expected: .changedHeader),
              Malformed(name: "another sender's header", chunks: [SnapshotAssemblerTests.chunk(SnapshotAssemblerTests.message(from: 3), offset: 1000, count: 1000)], expected: .changedHeader),
              Malformed(name: "changed declared total", chunks: [SnapshotAssemblerTests.chunk(offset: 1000, count: 1000, total: 4000)], expected: .changedHeader),
              Malformed(name: "past the declared total", chunks: [SnapshotAssemblerTests.chunk(SnapshotAssemblerTests.message(data: Array(SnapshotAssemblerTests.image) + [1, 2, 3]), offset: 1000, count: 2003, total: 3000)],
               expected: .pastDeclaredTotal(end: 3003, total: 3000)),
              Malformed(name: "empty chunk mid-transfer", chunks: [SnapshotAssemblerTests.chunk(offset: 1000, count: 0)], expected: .emptyChunk),
          ])
    func malformed(_ malformed: Malformed) {
        let (name, bad, expected) = (malformed.name, malformed.chunks, malformed.expected)
        let budget = SnapshotAssemblyBudget(limit: 1)
        var assembler = Self.assembler(budget: budget)
        #expect(Self.feed(&assembler, [Self.chunk(offset: 0, count: 1000)]) == [.success(.partial)])
        #expect(budget.assembling == 1)
        #expect(Self.feed(&assembler, bad) == [.failure(expected)], "\(name)")
        #expect(!assembler.isAssembling && budget.assembling == 0, "\(name): the partial transfer is gone")
        // The rest of the broken transfer is dropped quietly; nothing is ever delivered.
        #expect(Self.feed(&assembler, [Self.chunk(offset: 1000, count: 1000), Self.chunk(offset: 2000, count: 1000)])
                == [.success(.skipped), .success(.skipped)], "\(name)")
        // A new transfer starts afresh and completes.
        let whole = Self.feed(&assembler, [Self.chunk(offset: 0, count: 1500), Self.chunk(offset: 1500, count: 1500)])
        #expect(whole.last == .success(.complete(Self.message())), "\(name)")
    }

    @Test("a chunk with no transfer under way, a forged or invalid header, or one over maxSnapshotBytes starts nothing")
    func refusedStarts() {
        var assembler = Self.assembler(sender: 1, maxSnapshotBytes: 2000)
        #expect(Self.feed(&assembler, [Self.chunk(offset: 1000, count: 1000)]) == [.failure(.noTransfer(offset: 1000))])
        // Over TLS the stream is member 1's: a header from member 3 is forged.
        #expect(Self.feed(&assembler, [Self.chunk(Self.message(from: 3), offset: 0, count: 1000)])
                == [.failure(.invalidHeader(.wrongSender(authenticated: 1, claimed: 3)))])
        var heartbeat = Self.chunk(offset: 0, count: 1000)
        heartbeat.header.kind = .heartbeat
        #expect(Self.feed(&assembler, [heartbeat]) == [.failure(.invalidHeader(.unknownMessageKind(7)))])
        #expect(Self.feed(&assembler, [Self.chunk(offset: 0, count: 1000)]) == [.failure(.tooLarge(total: 3000, limit: 2000))])
        #expect(Self.feed(&assembler, [Self.chunk(offset: 0, count: 1000, total: 500)])
                == [.failure(.pastDeclaredTotal(end: 1000, total: 500))])
        #expect(!assembler.isAssembling)
    }

    @Test("at most maxConcurrentSnapshotAssemblies transfers over all streams; a finished or discarded one frees its slot")
    func budget() {
        let budget = SnapshotAssemblyBudget(limit: 1)
        var first = Self.assembler(budget: budget)
        var second = Self.assembler(budget: budget)
        #expect(Self.feed(&first, [Self.chunk(offset: 0, count: 1000)]) == [.success(.partial)])
        #expect(Self.feed(&second, [Self.chunk(offset: 0, count: 1000)]) == [.failure(.tooManyAssemblies(limit: 1))])
        let firstDiscarded = first.discard()  // the first stream ended
        #expect(firstDiscarded)
        #expect(budget.assembling == 0)
        #expect(Self.feed(&second, [Self.chunk(offset: 0, count: 1000)]) == [.success(.partial)])
        // A new transfer on the same stream replaces the partial one, holding one slot still.
        var abandoned = false
        let replaced = try? second.accept(Self.chunk(Self.message(index: 12), offset: 0, count: 1000), abandoned: &abandoned)
        #expect(replaced == .partial && abandoned && budget.assembling == 1)
        let secondDiscarded = second.discard()
        #expect(secondDiscarded && budget.assembling == 0)
        // A stream's assembly released without an end (the stream vanished): the slot comes back.
        let other = SnapshotAssemblyBudget(limit: 1)
        do {
            let holder = StreamSnapshotAssembly(Self.assembler(budget: other))
            var ignored = false
            _ = try? holder.accept(Self.chunk(offset: 0, count: 1000), abandoned: &ignored)
            #expect(other.assembling == 1)
        }
        #expect(other.assembling == 0)
    }

    @Test("a peer's snapshot waits in its own slot, takes turns with batches, is not restarted by a re-send, and goes when the peer does")
    func peerLinkSlot() async {
        var limits = PeerLink.Limits(capacity: 100, maxQueuedBytes: 1 << 30, maxBatchMessages: 100, maxBatchBytes: 1 << 20)
        limits.snapshotChunkBytes = 1000
        let link = PeerLink(peer: 2, address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        let heartbeat = Message(kind: .heartbeat, from: 1, to: 2, commit: 1)
        _ = link.enqueue([Self.message(), heartbeat])
        var order: [String] = []
        for _ in 0..<3 {
            switch await link.nextWrite() {
            case .chunk(let chunk)?: order.append("chunk@\(chunk.range.lowerBound)")
            case .batch(let batch)?: order.append("batch\(batch.count)")
            case nil: order.append("nil")
            }
        }
        // The same snapshot again (Raft re-sends one that got no answer): not restarted.
        #expect(link.enqueue([Self.message()]).duplicateSnapshots == 1)
        _ = link.enqueue([heartbeat])
        for _ in 0..<2 {
            switch await link.nextWrite() {
            case .chunk(let chunk)?: order.append("chunk@\(chunk.range.lowerBound)\(chunk.isLast ? " last" : "")")
            case .batch(let batch)?: order.append("batch\(batch.count)")
            case nil: order.append("nil")
            }
        }
        #expect(order == ["batch1", "chunk@0", "chunk@1000", "batch1", "chunk@2000 last"])
        #expect(!link.hasSnapshot)
        // A newer snapshot replaces one under way; a broken stream drops it.
        _ = link.enqueue([Self.message()])
        _ = await link.nextWrite()
        #expect(link.enqueue([Self.message(index: 20)]).supersededSnapshot)
        #expect(link.markDown().dropped == 1 && !link.hasSnapshot)
        // Closing hands the snapshot over whole.
        link.markUp()
        _ = link.enqueue([Self.message(index: 30)])
        _ = await link.nextWrite()
        #expect(link.close().compactMap(\.snapshot?.metadata.index) == [30])
    }
}

/// One malformed sequence, named in the test's output by its name rather than its bytes.
struct Malformed: Sendable, CustomTestStringConvertible {
    var name: String
    var chunks: [Raft_V1_SnapshotChunk]
    var expected: SnapshotChunkError
    var testDescription: String { name }
}

extension SnapshotAssembler.Outcome: CustomStringConvertible {
    public var description: String {
        switch self {
        case .partial: "partial"
        case .skipped: "skipped"
        case .complete(let message): "complete(index \(message.snapshot?.metadata.index ?? 0), \(message.snapshot?.data.count ?? 0) bytes)"
        }
    }
}
