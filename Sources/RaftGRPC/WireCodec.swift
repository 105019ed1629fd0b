#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Raft

/// Why a message that arrived from the network was refused.
///
/// proto3 accepts any combination of field values, so a buggy or hostile peer can send things the
/// Raft core must never see (its invariants would trap or, worse, silently corrupt the log). The
/// codec turns those into this error; the transport drops the message and logs it.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message kind is 0 (proto3's unset default) or not one this build knows.
    case unknownMessageKind(Int)
    /// An entry's kind is not one this build knows.
    case unknownEntryKind(position: Int, raw: Int)
    /// `from` or `to` is `noNode`: every message on the wire has a sender and a recipient.
    case missingNode(field: String)
    /// The message was addressed to another server (stale address after a membership change).
    case wrongRecipient(expected: NodeID, got: NodeID)
    /// The message claims a sender other than the member the connection authenticated as (TLS):
    /// a member must not speak for another.
    case wrongSender(authenticated: NodeID, claimed: NodeID)
    /// An append's entries must be the indexes `index + 1, index + 2, ...` in order.
    case entriesNotContiguous(position: Int, expectedIndex: UInt64, got: UInt64)
    /// An append's entry terms must not decrease, not precede `logTerm`, nor exceed the leader's term.
    case entryTermOutOfOrder(position: Int, term: UInt64)
    /// A snapshot message without a snapshot, or with an empty one (index 0, term 0 or no voters).
    case missingSnapshot
    /// A snapshot attached to a kind that never carries one.
    case unexpectedSnapshot(MessageKind)
    /// The snapshot's membership is malformed: a zero id, a duplicate, or a node both voter and learner.
    case invalidConfState(String)

    public var description: String {
        switch self {
        case .unknownMessageKind(let raw): "unknown message kind \(raw)"
        case .unknownEntryKind(let position, let raw): "entry \(position) has unknown kind \(raw)"
        case .missingNode(let field): "message has no '\(field)' node"
        case .wrongRecipient(let expected, let got): "message for node \(got) arrived at node \(expected)"
        case .wrongSender(let authenticated, let claimed): "message from node \(claimed) arrived on node \(authenticated)'s authenticated stream"
        case .entriesNotContiguous(let position, let expected, let got):
            "entry \(position) has index \(got), expected \(expected)"
        case .entryTermOutOfOrder(let position, let term): "entry \(position) has out-of-order term \(term)"
        case .missingSnapshot: "snapshot message without a (non-empty) snapshot"
        case .unexpectedSnapshot(let kind): "\(kind) message carries a snapshot"
        case .invalidConfState(let why): "invalid snapshot membership: \(why)"
        }
    }
}

/// Converts between `Raft.Message` and its protobuf form (Protos/raft.proto).
///
/// Encoding cannot fail. Decoding validates everything the Raft core relies on and throws
/// ``WireError`` otherwise; it never traps, whatever the bytes.
public enum WireCodec {
    // MARK: Encoding

    /// The protobuf form of `message`.
    public static func encode(_ message: Message) -> Raft_V1_Message {
        var out = Raft_V1_Message()
        // Raw values of both enums are identical by construction (see raft.proto).
        out.kind = Raft_V1_MessageKind(rawValue: Int(message.kind.rawValue)) ?? .unspecified
        out.from = message.from
        out.to = message.to
        out.term = message.term
        out.logTerm = message.logTerm
        out.index = message.index
        out.entries = message.entries.map(encode)
        out.commit = message.commit
        out.reject = message.reject
        out.rejectHint = message.rejectHint
        if let snapshot = message.snapshot {
            out.snapshot = encode(snapshot)
        }
        if !message.context.isEmpty {
            out.context = Data(message.context)
        }
        return out
    }

    /// The protobuf form of `messages`, as one batch.
    public static func encode(batch messages: some Sequence<Message>) -> Raft_V1_MessageBatch {
        var batch = Raft_V1_MessageBatch()
        batch.messages = messages.map { encode($0) }
        return batch
    }

    static func encode(_ entry: Entry) -> Raft_V1_Entry {
        var out = Raft_V1_Entry()
        out.term = entry.term
        out.index = entry.index
        out.kind = Raft_V1_EntryKind(rawValue: Int(entry.kind.rawValue)) ?? .normal
        if !entry.data.isEmpty {
            out.data = Data(entry.data)
        }
        return out
    }

    static func encode(_ snapshot: Snapshot) -> Raft_V1_Snapshot {
        var out = Raft_V1_Snapshot()
        out.metadata.index = snapshot.metadata.index
        out.metadata.term = snapshot.metadata.term
        out.metadata.voters = snapshot.metadata.confState.voters
        out.metadata.learners = snapshot.metadata.confState.learners
        if !snapshot.data.isEmpty {
            out.data = Data(snapshot.data)
        }
        return out
    }

    // MARK: Decoding

    /// Decodes and validates one message.
    ///
    /// - Parameter recipient: when given, a message addressed to any other node is refused.
    /// - Throws: ``WireError`` describing the first problem found.
    public static func decode(_ proto: Raft_V1_Message, recipient: NodeID? = nil, sender: NodeID? = nil) throws(WireError) -> Message {
        let rawKind = proto.kind.rawValue
        guard rawKind > 0, rawKind <= Int(UInt8.max), let kind = MessageKind(rawValue: UInt8(rawKind)) else {
            throw .unknownMessageKind(rawKind)
        }
        guard proto.from != noNode else { throw .missingNode(field: "from") }
        guard proto.to != noNode else { throw .missingNode(field: "to") }
        if let recipient, proto.to != recipient {
            throw .wrongRecipient(expected: recipient, got: proto.to)
        }
        if let sender, proto.from != sender {
            throw .wrongSender(authenticated: sender, claimed: proto.from)
        }

        var entries: [Entry] = []
        entries.reserveCapacity(proto.entries.count)
        for (position, entry) in proto.entries.enumerated() {
            let rawEntryKind = entry.kind.rawValue
            guard rawEntryKind >= 0, rawEntryKind <= Int(UInt8.max),
                let entryKind = EntryKind(rawValue: UInt8(rawEntryKind))
            else {
                throw .unknownEntryKind(position: position, raw: rawEntryKind)
            }
            entries.append(Entry(term: entry.term, index: entry.index, kind: entryKind, data: [UInt8](entry.data)))
        }
        if kind == .append {
            try validateAppend(index: proto.index, logTerm: proto.logTerm, term: proto.term, entries: entries)
        }

        var snapshot: Snapshot?
        if proto.hasSnapshot {
            guard kind == .snapshot else { throw .unexpectedSnapshot(kind) }
            snapshot = try decode(proto.snapshot)
        } else if kind == .snapshot {
            throw .missingSnapshot
        }

        return Message(
            kind: kind, from: proto.from, to: proto.to, term: proto.term, logTerm: proto.logTerm,
            index: proto.index, entries: entries, commit: proto.commit, reject: proto.reject,
            rejectHint: proto.rejectHint, snapshot: snapshot, context: [UInt8](proto.context)
        )
    }

    /// Decodes a batch, splitting it into the valid messages and the errors of the refused ones,
    /// so that one bad message does not cost the others.
    public static func decode(
        batch: Raft_V1_MessageBatch, recipient: NodeID? = nil, sender: NodeID? = nil
    ) -> (messages: [Message], errors: [WireError]) {
        var messages: [Message] = []
        messages.reserveCapacity(batch.messages.count)
        var errors: [WireError] = []
        for proto in batch.messages {
            do {
                messages.append(try decode(proto, recipient: recipient, sender: sender))
            } catch {
                errors.append(error)
            }
        }
        return (messages, errors)
    }

    /// The leader appends `entries` right after (`index`, `logTerm`) in its log of term `term`:
    /// indexes follow on one by one, and terms never decrease along a log nor exceed the leader's.
    private static func validateAppend(
        index: UInt64, logTerm: UInt64, term: UInt64, entries: [Entry]
    ) throws(WireError) {
        var previousTerm = logTerm
        for (position, entry) in entries.enumerated() {
            // Overflow-checked: an index near UInt64.max must be refused, not trap.
            let (offset, overflow1) = index.addingReportingOverflow(1)
            let (expected, overflow2) = offset.addingReportingOverflow(UInt64(position))
            guard !overflow1, !overflow2, entry.index == expected else {
                throw .entriesNotContiguous(
                    position: position, expectedIndex: overflow1 || overflow2 ? .max : expected, got: entry.index)
            }
            guard entry.term >= previousTerm, entry.term <= term else {
                throw .entryTermOutOfOrder(position: position, term: entry.term)
            }
            previousTerm = entry.term
        }
    }

    private static func decode(_ proto: Raft_V1_Snapshot) throws(WireError) -> Snapshot {
        let metadata = proto.metadata
        // Index 0 is the core's "empty snapshot"; a real one always has a term and a voter.
        guard proto.hasMetadata, metadata.index > 0, metadata.term > 0, !metadata.voters.isEmpty else {
            throw .missingSnapshot
        }
        var seen = Set<NodeID>()
        for node in metadata.voters + metadata.learners {
            guard node != noNode else { throw .invalidConfState("node id 0") }
            guard seen.insert(node).inserted else { throw .invalidConfState("node \(node) listed twice") }
        }
        return Snapshot(
            metadata: SnapshotMetadata(
                index: metadata.index, term: metadata.term,
                confState: ConfState(voters: metadata.voters, learners: metadata.learners)
            ),
            data: [UInt8](proto.data)
        )
    }
}
