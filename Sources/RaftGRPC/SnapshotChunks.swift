#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Raft
import Synchronization

// Snapshots cross the wire in chunks (Protos/raft.proto, SnapshotChunk): a state machine's image
// has no size limit, gRPC messages must have one, and a follower that needs a snapshot bigger than
// the limit would otherwise never catch up. The Raft core never sees chunks: the sender cuts a
// `.snapshot` message up here and the receiver hands Raft the reassembled message.

/// `Raft.Message`, for files that also import SwiftProtobuf (whose `Message` protocol clashes, and
/// the module's `Raft` struct hides the module name).
typealias RaftMessage = Message

/// The sender's side of one snapshot transfer to a peer: the message, and how far it went.
struct OutboundSnapshot: Sendable {
    /// The whole message, kept so that a link replaced by another (the peer's address changed)
    /// can hand it over; its data is shared with the Raft log's snapshot (copy-on-write), not copied.
    let message: Message
    /// The message with the snapshot's data left out: every chunk's header.
    let header: Raft_V1_Message
    /// Bytes of snapshot data already cut into chunks.
    private(set) var offset = 0
    /// Chunks taken so far (an empty snapshot is one chunk of no bytes).
    private(set) var chunksTaken = 0

    init(_ message: Message) {
        self.message = message
        var stripped = message
        stripped.snapshot?.data = []
        header = WireCodec.encode(stripped)
    }

    var data: [UInt8] { message.snapshot?.data ?? [] }
    var totalBytes: Int { data.count }

    /// Whether `other` is this transfer sent again: Raft re-sends a snapshot that got no answer
    /// within an election timeout, and restarting a transfer still under way would never finish one
    /// that takes longer than that.
    func isSameTransfer(as other: OutboundSnapshot) -> Bool {
        header == other.header && totalBytes == other.totalBytes
    }

    /// Takes the next chunk's range, at most `chunkBytes` long (an empty snapshot is one empty
    /// chunk). Cheap: the bytes are copied by `ChunkRange.encoded`, outside the caller's lock.
    mutating func takeChunk(chunkBytes: Int) -> ChunkRange {
        let start = offset
        offset = min(totalBytes, start + max(chunkBytes, 1))
        chunksTaken += 1
        return ChunkRange(header: header, data: data, range: start..<offset, isLast: offset == totalBytes)
    }

    /// Whether the last chunk was taken.
    var isFinished: Bool { chunksTaken > 0 && offset == totalBytes }

    /// One chunk to write, not yet encoded.
    struct ChunkRange: Sendable {
        let header: Raft_V1_Message
        let data: [UInt8]
        let range: Range<Int>
        let isLast: Bool

        /// The wire form (copies this chunk's bytes).
        var encoded: Raft_V1_MessageBatch {
            var chunk = Raft_V1_SnapshotChunk()
            chunk.header = header
            chunk.totalBytes = UInt64(data.count)
            chunk.offset = UInt64(range.lowerBound)
            if !range.isEmpty {
                // One copy through a buffer: a debug build copies a slice element by element otherwise.
                chunk.data = data.withUnsafeBufferPointer { Data(buffer: UnsafeBufferPointer(rebasing: $0[range])) }
            }
            var batch = Raft_V1_MessageBatch()
            batch.snapshotChunk = chunk
            return batch
        }
    }
}

/// Why a received snapshot chunk was refused. The chunk is dropped, and so is the transfer it
/// belongs to: the leader sends the snapshot again when it gets no answer.
public enum SnapshotChunkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The header is not a valid snapshot message (or speaks for another member under TLS).
    case invalidHeader(WireError)
    /// A chunk past offset 0 with no transfer under way on this stream (its start was lost or refused).
    case noTransfer(offset: UInt64)
    /// The chunk's header or declared total differs from its transfer's: another snapshot, term
    /// or sender mid-transfer.
    case changedHeader
    /// The chunk does not start where the previous one ended (a gap, or an overlap).
    case notContiguous(expected: UInt64, got: UInt64)
    /// The chunk runs past the declared total.
    case pastDeclaredTotal(end: UInt64, total: UInt64)
    /// A chunk without data in a transfer that is not complete.
    case emptyChunk
    /// The declared total exceeds `maxSnapshotBytes`.
    case tooLarge(total: UInt64, limit: Int)
    /// `maxConcurrentSnapshotAssemblies` transfers are being assembled already (on other streams).
    case tooManyAssemblies(limit: Int)

    /// Whether the refusal ended a transfer that was being assembled (its partial data dropped),
    /// rather than one not yet started.
    var brokeTransferUnderWay: Bool {
        switch self {
        case .changedHeader, .notContiguous, .pastDeclaredTotal, .emptyChunk: true
        case .invalidHeader, .noTransfer, .tooLarge, .tooManyAssemblies: false
        }
    }

    public var description: String {
        switch self {
        case .invalidHeader(let error): "snapshot chunk with an invalid header: \(error)"
        case .noTransfer(let offset): "snapshot chunk at offset \(offset) without a transfer under way"
        case .changedHeader: "snapshot chunk whose header differs from its transfer's"
        case .notContiguous(let expected, let got): "snapshot chunk at offset \(got), expected \(expected)"
        case .pastDeclaredTotal(let end, let total): "snapshot chunk ends at \(end), past the declared \(total) bytes"
        case .emptyChunk: "empty snapshot chunk before the end of its transfer"
        case .tooLarge(let total, let limit): "snapshot of \(total) bytes is larger than maxSnapshotBytes (\(limit))"
        case .tooManyAssemblies(let limit): "\(limit) snapshots are being received already (maxConcurrentSnapshotAssemblies)"
        }
    }
}

/// How many snapshot assemblies the whole transport holds at once: each may grow to
/// `maxSnapshotBytes`, so this bounds what inbound streams can make us buffer.
final class SnapshotAssemblyBudget: Sendable {
    let limit: Int
    private let inUse = Atomic<Int>(0)

    init(limit: Int) { self.limit = max(limit, 0) }

    var assembling: Int { inUse.load(ordering: .relaxed) }

    func tryAcquire() -> Bool {
        var current = inUse.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = inUse.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() { inUse.subtract(1, ordering: .relaxed) }
}

/// Reassembles the snapshot transfers of one inbound stream, one at a time, in the order their
/// chunks arrive. A value type driven by the stream's handler (``StreamSnapshotAssembly``).
struct SnapshotAssembler {
    /// What a chunk did.
    enum Outcome: Equatable {
        /// Accepted; the transfer goes on.
        case partial
        /// The transfer's last chunk: the whole message, for Raft.
        case complete(Message)
        /// A chunk of a transfer already refused or broken, dropped without further noise.
        case skipped
    }

    private struct Assembly {
        let header: Raft_V1_Message
        let message: Message
        let total: UInt64
        var data: [UInt8]
    }

    private enum State {
        case idle
        case assembling(Assembly)
        /// The transfer with this header was refused or broke: its remaining chunks are dropped.
        case skipping(header: Raft_V1_Message, total: UInt64)
    }

    let recipient: NodeID
    /// The authenticated member (TLS) every header must come from; nil without TLS.
    let sender: NodeID?
    let maxSnapshotBytes: Int
    let budget: SnapshotAssemblyBudget
    private var state = State.idle

    /// The assembly buffer is reserved up to this much at a transfer's start and grows with the
    /// bytes that actually arrive beyond it: a declared total is only a claim.
    static let initialReservation = 64 << 20

    init(recipient: NodeID, sender: NodeID?, maxSnapshotBytes: Int, budget: SnapshotAssemblyBudget) {
        self.recipient = recipient
        self.sender = sender
        self.maxSnapshotBytes = maxSnapshotBytes
        self.budget = budget
    }

    /// Whether a transfer is partly assembled (it holds a slot of the budget).
    var isAssembling: Bool {
        if case .assembling = state { return true }
        return false
    }

    /// Bytes of the transfer under way.
    var bufferedBytes: Int {
        if case .assembling(let assembly) = state { return assembly.data.count }
        return 0
    }

    /// Takes one chunk. Offset 0 starts a transfer and abandons a partial one (see
    /// `abandoned`); a refused chunk ends its transfer, whose later chunks are then `.skipped`.
    ///
    /// - Parameter abandoned: set to true when a partial transfer was dropped by this chunk.
    mutating func accept(_ chunk: Raft_V1_SnapshotChunk, abandoned: inout Bool) throws(SnapshotChunkError) -> Outcome {
        if chunk.offset == 0 {
            abandoned = discard()
            try start(chunk)
        } else {
            switch state {
            case .idle:
                throw .noTransfer(offset: chunk.offset)
            case .skipping(let header, let total):
                if chunk.header == header && chunk.totalBytes == total { return .skipped }
                throw .noTransfer(offset: chunk.offset)
            case .assembling:
                // Taken out of `state` so that the buffer is uniquely referenced while it grows:
                // appending to a shared one would copy the whole assembly at every chunk.
                var assembly = takeAssembly()!
                guard chunk.header == assembly.header, chunk.totalBytes == assembly.total else {
                    fail(skipping: assembly)
                    throw .changedHeader
                }
                let received = UInt64(assembly.data.count)
                guard chunk.offset == received else {
                    fail(skipping: assembly)
                    throw .notContiguous(expected: received, got: chunk.offset)
                }
                if let error = Self.checkBounds(chunk, total: assembly.total) {
                    fail(skipping: assembly)
                    throw error
                }
                Self.append(chunk.data, to: &assembly.data)
                state = .assembling(assembly)
            }
        }
        return finishIfComplete()
    }

    /// Drops the transfer under way, if any; returns whether there was one.
    @discardableResult
    mutating func discard() -> Bool {
        guard case .assembling = state else {
            state = .idle
            return false
        }
        budget.release()
        state = .idle
        return true
    }

    private mutating func start(_ chunk: Raft_V1_SnapshotChunk) throws(SnapshotChunkError) {
        let skip = State.skipping(header: chunk.header, total: chunk.totalBytes)
        let message: Message
        do throws(WireError) {
            guard chunk.hasHeader, chunk.header.kind == .snapshot else {
                throw WireError.unknownMessageKind(chunk.header.kind.rawValue)
            }
            message = try WireCodec.decode(chunk.header, recipient: recipient, sender: sender)
        } catch {
            state = skip
            throw .invalidHeader(error)
        }
        guard chunk.totalBytes <= UInt64(max(maxSnapshotBytes, 0)) else {
            state = skip
            throw .tooLarge(total: chunk.totalBytes, limit: maxSnapshotBytes)
        }
        if let error = Self.checkBounds(chunk, total: chunk.totalBytes) {
            state = skip
            throw error
        }
        guard budget.tryAcquire() else {
            state = skip
            throw .tooManyAssemblies(limit: budget.limit)
        }
        var data: [UInt8] = []
        data.reserveCapacity(Int(min(chunk.totalBytes, UInt64(Self.initialReservation))))
        Self.append(chunk.data, to: &data)
        state = .assembling(Assembly(header: chunk.header, message: message, total: chunk.totalBytes, data: data))
    }

    /// Appends with one copy (a typed buffer is contiguous storage; `Data` may be iterated).
    private static func append(_ bytes: Data, to data: inout [UInt8]) {
        bytes.withUnsafeBytes { raw in data.append(contentsOf: raw.bindMemory(to: UInt8.self)) }
    }

    /// A chunk must stay within the declared total and, unless it completes an empty snapshot, carry data.
    private static func checkBounds(_ chunk: Raft_V1_SnapshotChunk, total: UInt64) -> SnapshotChunkError? {
        let (end, overflow) = chunk.offset.addingReportingOverflow(UInt64(chunk.data.count))
        if overflow || end > total { return .pastDeclaredTotal(end: overflow ? .max : end, total: total) }
        if chunk.data.isEmpty && total > 0 { return .emptyChunk }
        return nil
    }

    /// The transfer under way, moved out of `state` (which becomes idle; its budget slot stays held).
    private mutating func takeAssembly() -> Assembly? {
        guard case .assembling(let assembly) = state else { return nil }
        state = .idle
        return assembly
    }

    private mutating func fail(skipping assembly: Assembly) {
        budget.release()
        state = .skipping(header: assembly.header, total: assembly.total)
    }

    private mutating func finishIfComplete() -> Outcome {
        guard case .assembling(var assembly) = state, UInt64(assembly.data.count) == assembly.total else { return .partial }
        state = .idle
        budget.release()
        var message = assembly.message
        // Moved, not copied: the assembly is gone.
        message.snapshot?.data = assembly.data
        assembly.data = []
        return .complete(message)
    }
}

/// One inbound stream's assembler, shared by its handler's receive and end callbacks (which the
/// connection's event loop calls one at a time; the lock is never contended). Releases its budget
/// slot if the stream goes away without ending properly.
final class StreamSnapshotAssembly: Sendable {
    private let assembler: Mutex<SnapshotAssembler>
    private let budget: SnapshotAssemblyBudget

    init(_ assembler: SnapshotAssembler) {
        self.assembler = Mutex(assembler)
        self.budget = assembler.budget
    }

    func accept(_ chunk: Raft_V1_SnapshotChunk, abandoned: inout Bool) throws(SnapshotChunkError) -> SnapshotAssembler.Outcome {
        try assembler.withLock { (assembler: inout SnapshotAssembler) throws(SnapshotChunkError) -> SnapshotAssembler.Outcome in
            try assembler.accept(chunk, abandoned: &abandoned)
        }
    }

    /// Drops a partial transfer (the stream ended); returns whether there was one, and its size.
    func discard() -> (discarded: Bool, bytes: Int) {
        assembler.withLock { assembler in
            let bytes = assembler.bufferedBytes
            return (assembler.discard(), bytes)
        }
    }

    deinit {
        assembler.withLock { _ = $0.discard() }
    }
}
