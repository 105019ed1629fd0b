import Logging

// Snapshots of the state machine, taken off the Raft loop.
extension RaftNode {
    /// Starts a snapshot once `snapshotThreshold` entries were applied since the last one. The
    /// state machine's image is captured here (cheap: copy-on-write) and encoded on another task,
    /// so the loop keeps replicating while a large state is serialized (encoding 100,000 revisions
    /// on the loop stalled every write for seconds); `finishSnapshot` then compacts the log.
    func maybeCompact() throws {
        let r = raw.raft
        guard !encodingSnapshot, r.appliedIndex >= r.firstIndex - 1 + options.snapshotThreshold else { return }
        encodingSnapshot = true
        let (index, confState, encode, storage) = (r.appliedIndex, r.confState, machine.snapshotImage(), storage)
        Task.detached { [weak self] in
            let data = encode()
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
}
