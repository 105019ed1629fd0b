/// The cluster's members with what each told the cluster about itself when it was added: the
/// context of its membership entry (its addresses, for a master). Raft keeps the bytes opaque;
/// the application decides what they mean.
///
/// The table is replicated state: it changes only when a membership entry is applied, so every
/// server that applied the same log has the same table. It is part of every snapshot the node
/// takes (see `SnapshotEnvelope`), so a server that catches up from a snapshot, whose log never
/// held the entries that added the others, still learns where they are (thesis §4.2.1: a new
/// server often catches up by snapshot).
public struct MemberTable: Sendable, Equatable {
    /// The context of each member, by id.
    public var contexts: [NodeID: [UInt8]]

    public init(contexts: [NodeID: [UInt8]] = [:]) {
        self.contexts = contexts
    }

    /// Applies a committed membership change. A promotion keeps the member's context unless the
    /// change carries a new one.
    public mutating func apply(_ change: ConfChange) {
        switch change.kind {
        case .addNode, .addLearner:
            if !change.context.isEmpty || contexts[change.node] == nil { contexts[change.node] = change.context }
        case .promote:
            if !change.context.isEmpty { contexts[change.node] = change.context }
        case .removeNode:
            contexts[change.node] = nil
        }
    }

    /// Binary form: count, then per member (sorted by id) its id, its context's length and the context.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        appendU64(&out, UInt64(contexts.count))
        for (id, context) in contexts.sorted(by: { $0.key < $1.key }) {
            appendU64(&out, id)
            appendU64(&out, UInt64(context.count))
            out.append(contentsOf: context)
        }
        return out
    }

    /// Decodes `encoded`; nil when malformed.
    public init?(decoding bytes: ArraySlice<UInt8>) {
        var at = bytes.startIndex
        func u64() -> UInt64? {
            guard bytes.endIndex - at >= 8 else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += 8
            return v
        }
        guard let count = u64(), count <= UInt64(bytes.count) else { return nil }
        var contexts: [NodeID: [UInt8]] = [:]
        for _ in 0..<count {
            guard let id = u64(), let length = u64(), UInt64(bytes.endIndex - at) >= length else { return nil }
            contexts[id] = Array(bytes[at..<(at + Int(length))])
            at += Int(length)
        }
        guard at == bytes.endIndex else { return nil }
        self.init(contexts: contexts)
    }
}

private func appendU64(_ out: inout [UInt8], _ value: UInt64) {
    withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
}

/// How the node stores its member table inside a snapshot's data, in front of the state
/// machine's image: a magic, the table's length, the table, then the image. The core sees one
/// opaque byte string; only the driver looks inside.
///
/// Data without the magic is a bare image (snapshots taken before member tables existed): it
/// restores with no contexts, and the membership itself still comes from the snapshot's
/// `ConfState`.
public enum SnapshotEnvelope {
    /// "RAFTMEM1": a state machine's image that happens to start with these 8 bytes and then a
    /// valid table would be misread, so the magic is long and the table is checked whole.
    static let magic: [UInt8] = Array("RAFTMEM1".utf8)

    /// `image` behind `members`.
    public static func wrap(members: MemberTable, image: [UInt8]) -> [UInt8] {
        wrap(members: members) { $0.append(contentsOf: image) }
    }

    /// The image `writeImage` appends, behind `members`: written in place, not copied behind
    /// the table (a state machine's image can be hundreds of megabytes).
    public static func wrap(members: MemberTable, writeImage: (inout [UInt8]) -> Void) -> [UInt8] {
        let table = members.encoded
        var out = magic
        appendU64(&out, UInt64(table.count))
        out.append(contentsOf: table)
        writeImage(&out)
        return out
    }

    /// The member table (nil for a bare image) and the state machine's image.
    public static func unwrap(_ data: [UInt8]) -> (members: MemberTable?, image: [UInt8]) {
        guard data.count >= magic.count + 8, data.starts(with: magic) else { return (nil, data) }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(data[magic.count + i]) << (8 * UInt64(i)) }
        let start = magic.count + 8
        guard UInt64(data.count - start) >= length,
              let table = MemberTable(decoding: data[start..<(start + Int(length))]) else { return (nil, data) }
        return (table, Array(data[(start + Int(length))...]))
    }
}

/// What the node tells the application after its membership changed: the applied `ConfState`,
/// the member table, and whether this server has been removed.
public struct MembershipView: Sendable, Equatable {
    public var confState: ConfState
    public var members: MemberTable
    /// True once this server was a member and a later membership no longer lists it: it takes no
    /// further part in the cluster (see `RaftNode`).
    public var removed: Bool

    public init(confState: ConfState, members: MemberTable, removed: Bool) {
        self.confState = confState
        self.members = members
        self.removed = removed
    }
}
