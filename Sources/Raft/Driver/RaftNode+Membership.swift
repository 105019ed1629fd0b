import Logging

// The member table and the node's own membership: what the application is told, and how a
// removed server leaves.
extension RaftNode {
    /// The applied membership and member table, and whether this server was removed.
    public func membership() -> MembershipView {
        MembershipView(confState: raw.raft.confState, members: members, removed: removed)
    }

    /// The table a restored snapshot gives: its own, or (a bare image from before tables existed)
    /// the contexts already known for the snapshot's members.
    static func table(_ table: MemberTable?, for conf: ConfState, keeping known: MemberTable) -> MemberTable {
        if let table { return table }
        var kept = MemberTable()
        for node in conf.members { kept.contexts[node] = known.contexts[node] ?? [] }
        return kept
    }

    /// Called after a membership entry or a snapshot was applied.
    func membershipApplied(_ conf: ConfState) {
        let id = raw.raft.id
        if conf.members.contains(id) {
            wasMember = true
        } else if wasMember && !removed {
            // Thesis §4.2.2: a removed server must not disrupt the cluster. Once it applied its own
            // removal it stops for good: no ticks (so no elections with its stale log), no message
            // handling, no requests. A removed leader has already stepped down in the core. The
            // application learns it from `onMembershipChange` and typically exits, as etcd does.
            removed = true
            knownLeader.store(noNode, ordering: .releasing)  // it forwards nothing any more either
            logger.warning("this server was removed from the cluster; it takes no further part")
            // The commit index that covers the removal need not be durable yet (it rides with the
            // next synced batch, and a removed server makes none): save it, so that a restart
            // replays the removal and stays out too. The entry itself is on disk (applied).
            do {
                try storage.save(PersistBatch(hardState: raw.raft.hardState))
            } catch {
                logger.error("could not persist the commit of this server's removal", metadata: ["error": "\(error)"])
            }
            for waiter in proposals.removeAll() { waiter.resume(throwing: RaftNodeError.rejected(Self.removedMessage)) }
            failReadsAndTransfers(.rejected(Self.removedMessage))
        }
        notifyMembership()
    }

    func notifyMembership() {
        options.onMembershipChange?(membership())
    }

    static var removedMessage: String { "this member was removed from the cluster" }
}
