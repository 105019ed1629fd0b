import Logging

// Snapshots of the state machine, taken off the Raft loop.
extension RaftNode {
    /// Starts a snapshot once `snapshotThreshold` entries were applied since the last one. The
    /// state machine's image is captured here (cheap: copy-on-write) and encoded on another thread,
    /// so the loop keeps replicating while a large state is serialized (encoding 100,000 revisions
    /// on the loop stalled every write for seconds); `finishSnapshot` then compacts the log.
    func maybeCompact() throws {
        let r = raw.raft
        guard !encodingSnapshot, r.appliedIndex >= r.firstIndex - 1 + options.snapshotThreshold else { return }
        encodingSnapshot = true
        // The member table is captured with the image, at the same applied index: a server that
        // restores this snapshot learns the members' contexts (addresses) from it.
        let (index, confState, encode, storage) = (r.appliedIndex, r.confState, machine.snapshotImage(), storage)
        let members = self.members
        // On a thread of its own: encoding a large image takes seconds, and on the cooperative
        // pool it held one of its few threads all along.
        runOnOwnThread { [weak self] in
            let data = SnapshotEnvelope.wrap(members: members, writeImage: encode)
            do {
                // Written and synced here, off the loop (see SQLiteSnapshotFile for why).
                try storage.stageSnapshot(index: index, data: data)
            } catch {
                self?.enqueue(.storageFailed("cannot stage snapshot \(index): \(error)"))
                return
            }
            self?.enqueue(.snapshotEncoded(index: index, confState: confState, data: data))
        }
    }

    func finishSnapshot(index: UInt64, confState: ConfState, data: [UInt8]) {
        encodingSnapshot = false
        // A snapshot from the leader may have replaced the log meanwhile; then this one is stale.
        guard index > raw.raft.firstIndex - 1, let snap = try? raw.compact(at: index, confState: confState, data: data) else { return }
        do {
            try storage.save(PersistBatch(snapshot: snap))
        } catch {
            logger.critical("storage failed; stopping", metadata: ["error": "\(error)"])
            storageFailure = .storage("\(error)")
            return
        }
        logger.debug("compacted log", metadata: ["index": "\(snap.metadata.index)", "bytes": "\(data.count)"])
    }

    /// Why a snapshot message from a peer must not reach the core, or nil to step it.
    ///
    /// The core persists an accepted snapshot in the next Ready and the state machine restores it
    /// only after (thesis §5.3: the follower saves the snapshot, then resets its state machine
    /// from it), so an image `restore` refuses would be on disk already and refused again at every
    /// start. It is checked here, before the core sees it: the metadata must describe a real
    /// position and membership, and the state machine must be able to decode the image. A refused
    /// snapshot is dropped like a lost message (the sender retries; the term is not adopted from it).
    /// One the core would ignore anyway (not past our commit index) is not decoded.
    func refusal(of message: Message) -> String? {
        guard let snap = message.snapshot else { return "no snapshot attached" }
        let meta = snap.metadata
        guard meta.index > raw.raft.commitIndex else { return nil }
        if meta.index == 0 || meta.term == 0 { return "index and term must be positive" }
        if meta.term > message.term { return "snapshot term \(meta.term) is past the message's term \(message.term)" }
        let voters = meta.confState.voters, learners = meta.confState.learners
        if voters.isEmpty { return "no voters" }
        if voters.contains(noNode) || learners.contains(noNode) { return "a member with id 0" }
        if Set(voters).count != voters.count || Set(learners).count != learners.count
            || !Set(voters).isDisjoint(with: learners) {
            return "a member listed twice"
        }
        do {
            try machine.validateSnapshot(SnapshotEnvelope.unwrap(snap.data).image)
        } catch {
            return "the state machine cannot restore it: \(error)"
        }
        return nil
    }
}
