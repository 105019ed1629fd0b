import Foundation
import Raft
import Testing

@testable import RaftGRPC

/// Builds random but valid messages of each kind from a seeded generator, so a failure reproduces.
struct MessageFactory {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
    mutating func u64(_ range: ClosedRange<UInt64>) -> UInt64 { UInt64.random(in: range, using: &random) }
    mutating func bytes(max: Int) -> [UInt8] { (0..<int(0...max)).map { _ in UInt8.random(in: 0...255, using: &random) } }
    mutating func bool() -> Bool { Bool.random(using: &random) }

    mutating func message(kind: MessageKind) -> Message {
        let term = u64(1...1_000_000)
        let index = u64(0...UInt64.max / 2)
        var message = Message(
            kind: kind, from: u64(1...9), to: u64(1...9), term: term, logTerm: u64(0...term),
            index: index, commit: u64(0...index), reject: bool(), rejectHint: u64(0...UInt64.max),
            context: bytes(max: 16))
        switch kind {
        case .append:
            // Contiguous after `index`, terms non-decreasing from `logTerm` up to `term`.
            var entryTerm = message.logTerm
            message.entries = (0..<int(0...20)).map { position in
                entryTerm = u64(entryTerm...term)
                return Entry(
                    term: entryTerm, index: index + 1 + UInt64(position),
                    kind: bool() ? .normal : .confChange, data: bytes(max: 64))
            }
        case .propose:
            // Proposals carry entries the leader has not numbered yet.
            message.entries = (0..<int(1...5)).map { _ in Entry(term: 0, index: 0, data: bytes(max: 64)) }
        case .snapshot:
            let voters = Array(Set((0..<int(1...5)).map { _ in u64(1...100) }))
            let learners = Array(Set((0..<int(0...3)).map { _ in u64(101...200) }))
            message.snapshot = Snapshot(
                metadata: SnapshotMetadata(
                    index: u64(1...UInt64.max), term: u64(1...term),
                    confState: ConfState(voters: voters, learners: learners)),
                data: bytes(max: 4096))
        default:
            break
        }
        return message
    }
}

/// Encodes, serializes to bytes, parses and decodes: the full path a message takes.
func roundTrip(_ message: Message) throws -> Message {
    let bytes: [UInt8] = try WireCodec.encode(message).serializedBytes()
    return try WireCodec.decode(Raft_V1_Message(serializedBytes: bytes))
}

@Suite("WireCodec")
struct WireCodecTests {
    @Test("every kind survives a round trip", arguments: MessageKind.allCases)
    func roundTripEveryKind(kind: MessageKind) throws {
        var factory = MessageFactory(seed: 0x5EED_0000 + UInt64(kind.rawValue))
        for _ in 0..<200 {
            let message = factory.message(kind: kind)
            #expect(try roundTrip(message) == message)
        }
    }

    @Test("extreme values survive a round trip")
    func extremes() throws {
        let message = Message(
            kind: .append, from: .max, to: .max, term: .max, logTerm: .max, index: .max - 1,
            entries: [Entry(term: .max, index: .max, kind: .confChange, data: [0, 255])],
            commit: .max, reject: true, rejectHint: .max, context: [UInt8](repeating: 7, count: 1000))
        #expect(try roundTrip(message) == message)
    }

    @Test("a batch keeps order and drops only the bad messages")
    func batch() {
        var factory = MessageFactory(seed: 42)
        var good = (0..<50).map { _ in factory.message(kind: .heartbeat) }
        for i in good.indices { good[i].to = 3 }
        var batch = WireCodec.encode(batch: good)
        var bad = WireCodec.encode(good[0])
        bad.kind = .unspecified
        batch.messages.insert(bad, at: 10)
        var misrouted = WireCodec.encode(good[1])
        misrouted.to = 4
        batch.messages.insert(misrouted, at: 20)

        let (messages, errors) = WireCodec.decode(batch: batch, recipient: 3)
        #expect(messages == good)
        #expect(errors == [.unknownMessageKind(0), .wrongRecipient(expected: 3, got: 4)])
    }

    @Test("on an authenticated stream, a message from any other member is refused and the rest of the batch kept")
    func forgedSender() {
        let honest = (1...4).map { Message(kind: .heartbeat, from: 2, to: 1, term: 5, commit: UInt64($0)) }
        var batch = WireCodec.encode(batch: honest)
        var forged = WireCodec.encode(Message(kind: .append, from: 3, to: 1, term: 9, commit: 99))
        forged.index = 0
        batch.messages.insert(forged, at: 2)
        let (messages, errors) = WireCodec.decode(batch: batch, recipient: 1, sender: 2)
        #expect(messages == honest)
        #expect(errors == [.wrongSender(authenticated: 2, claimed: 3)])
        // Without an authenticated sender (plain text), the header is all there is.
        #expect(WireCodec.decode(batch: batch, recipient: 1).messages.count == 5)
    }

    // MARK: Malformed input

    static func valid(_ kind: MessageKind = .append) -> Raft_V1_Message {
        var factory = MessageFactory(seed: 7)
        var message = factory.message(kind: kind)
        if kind == .append {
            message.term = 10
            message.logTerm = 3
            message.index = 100
            message.entries = (0..<3).map { Entry(term: 5, index: 101 + UInt64($0)) }
        }
        return WireCodec.encode(message)
    }

    static func decodeError(_ proto: Raft_V1_Message, recipient: NodeID? = nil) -> WireError? {
        do {
            _ = try WireCodec.decode(proto, recipient: recipient)
            return nil
        } catch {
            return error
        }
    }

    @Test("the fixtures themselves are valid")
    func fixturesValid() {
        for kind in MessageKind.allCases {
            #expect(Self.decodeError(Self.valid(kind)) == nil)
        }
    }

    @Test("unknown kinds are refused")
    func unknownKinds() {
        var proto = Self.valid(.heartbeat)
        proto.kind = .unspecified
        #expect(Self.decodeError(proto) == .unknownMessageKind(0))
        proto.kind = .UNRECOGNIZED(99)
        #expect(Self.decodeError(proto) == .unknownMessageKind(99))
        proto.kind = .UNRECOGNIZED(-1)
        #expect(Self.decodeError(proto) == .unknownMessageKind(-1))
        proto.kind = .UNRECOGNIZED(257)  // would wrap to a valid UInt8 if truncated
        #expect(Self.decodeError(proto) == .unknownMessageKind(257))

        var entry = Self.valid(.append)
        entry.entries[1].kind = .UNRECOGNIZED(9)
        #expect(Self.decodeError(entry) == .unknownEntryKind(position: 1, raw: 9))
    }

    @Test("missing or wrong endpoints are refused")
    func endpoints() {
        var proto = Self.valid(.vote)
        proto.from = 0
        #expect(Self.decodeError(proto) == .missingNode(field: "from"))
        proto = Self.valid(.vote)
        proto.to = 0
        #expect(Self.decodeError(proto) == .missingNode(field: "to"))
        proto = Self.valid(.vote)
        proto.to = 2
        #expect(Self.decodeError(proto, recipient: 3) == .wrongRecipient(expected: 3, got: 2))
    }

    @Test("append entries must follow the message index one by one")
    func appendIndexes() {
        var proto = Self.valid(.append)
        proto.entries[0].index = 100  // should be 101
        #expect(Self.decodeError(proto) == .entriesNotContiguous(position: 0, expectedIndex: 101, got: 100))

        proto = Self.valid(.append)
        proto.entries[2].index = 104  // gap after 102
        #expect(Self.decodeError(proto) == .entriesNotContiguous(position: 2, expectedIndex: 103, got: 104))

        proto = Self.valid(.append)
        proto.entries.swapAt(0, 1)
        #expect(Self.decodeError(proto) == .entriesNotContiguous(position: 0, expectedIndex: 101, got: 102))

        proto = Self.valid(.append)
        proto.index = .max  // the first entry's index would overflow
        #expect(Self.decodeError(proto) == .entriesNotContiguous(position: 0, expectedIndex: .max, got: 101))
    }

    @Test("append entry terms must be ordered and bounded")
    func appendTerms() {
        var proto = Self.valid(.append)
        proto.entries[1].term = 4  // below the previous entry's 5
        #expect(Self.decodeError(proto) == .entryTermOutOfOrder(position: 1, term: 4))

        proto = Self.valid(.append)
        proto.entries[0].term = 2  // below logTerm 3
        #expect(Self.decodeError(proto) == .entryTermOutOfOrder(position: 0, term: 2))

        proto = Self.valid(.append)
        proto.entries[2].term = 11  // above the leader's term 10
        #expect(Self.decodeError(proto) == .entryTermOutOfOrder(position: 2, term: 11))
    }

    @Test("snapshots must be present, non-empty, well formed, and only where expected")
    func snapshots() {
        var proto = Self.valid(.snapshot)
        proto.clearSnapshot()
        #expect(Self.decodeError(proto) == .missingSnapshot)

        proto = Self.valid(.snapshot)
        proto.snapshot.metadata.index = 0
        #expect(Self.decodeError(proto) == .missingSnapshot)

        proto = Self.valid(.snapshot)
        proto.snapshot.clearMetadata()
        #expect(Self.decodeError(proto) == .missingSnapshot)

        proto = Self.valid(.snapshot)
        proto.snapshot.metadata.voters = []
        #expect(Self.decodeError(proto) == .missingSnapshot)

        proto = Self.valid(.snapshot)
        proto.snapshot.metadata.voters = [1, 2, 2]
        #expect(Self.decodeError(proto) == .invalidConfState("node 2 listed twice"))

        proto = Self.valid(.snapshot)
        proto.snapshot.metadata.voters = [1, 2]
        proto.snapshot.metadata.learners = [2]
        #expect(Self.decodeError(proto) == .invalidConfState("node 2 listed twice"))

        proto = Self.valid(.snapshot)
        proto.snapshot.metadata.learners = [0]
        #expect(Self.decodeError(proto) == .invalidConfState("node id 0"))

        var heartbeat = Self.valid(.heartbeat)
        heartbeat.snapshot = Self.valid(.snapshot).snapshot
        #expect(Self.decodeError(heartbeat) == .unexpectedSnapshot(.heartbeat))
    }

    @Test("random bytes never crash the decoder")
    func fuzz() {
        var random = SplitMix64(seed: 0xF022)
        let template: [UInt8] = (try? WireCodec.encode(batch: [Message(kind: .append, from: 1, to: 2)])
            .serializedBytes()) ?? []
        var parsed = 0
        for round in 0..<2000 {
            var bytes: [UInt8]
            if round.isMultiple(of: 2) {
                bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                // Mutations of a valid encoding reach deeper than pure noise.
                bytes = template
                for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            guard let batch = try? Raft_V1_MessageBatch(serializedBytes: bytes) else { continue }
            parsed += 1
            _ = WireCodec.decode(batch: batch, recipient: 2)
        }
        #expect(parsed > 0)
    }
}
