/// Bounds the history the built-in store keeps: while its replica leads, it compacts away all but
/// the last `retain` revisions, as etcd does with `--auto-compaction-mode=revision` and as
/// Kubernetes' API server does for its etcd every five minutes.
///
/// Why the masters need it: every revision stays in memory and in each Raft snapshot until it is
/// compacted, so without it a busy cluster's snapshots grow without end (100,000 puts made each
/// snapshot a multi-second stall and failed `etcdctl check perf`). Compaction is an ordinary
/// replicated command, so every replica drops the same history at the same point. Watchers that
/// fall further behind than `retain` revisions get etcd's "required revision has been compacted"
/// and list again, as Kubernetes informers do.
public struct HistoryCompactor: Sendable {
    let store: RaftStore
    let retain: Int64
    let interval: Duration
    let maxEventsPerStep: Int

    /// - Parameters:
    ///   - retain: revisions kept behind the current one; compaction runs once twice as many
    ///     have piled up, so each compaction drops at least `retain` revisions.
    ///   - interval: how often to check.
    ///   - maxEventsPerStep: the most events one compaction command drops. A compaction holds the
    ///     store while it applies, on every replica, and reads wait for it: 10,000 revisions of
    ///     placements (tens of thousands of events) held it 40-280 ms, 5,000 events 30-60 ms. Many
    ///     small commands let reads in between.
    public init(store: RaftStore, retain: Int64 = 10_000, interval: Duration = .milliseconds(500), maxEventsPerStep: Int = 1_000) {
        precondition(retain > 0, "retain must be positive")
        precondition(maxEventsPerStep > 0, "maxEventsPerStep must be positive")
        self.store = store
        self.retain = retain
        self.interval = interval
        self.maxEventsPerStep = maxEventsPerStep
    }

    /// Runs until the calling task is cancelled.
    public func run() async {
        while !Task.isCancelled {
            _ = await step()
            try? await Task.sleep(for: interval)
        }
    }

    /// One check: compacts to the target in commands of at most `maxEventsPerStep` events each;
    /// returns the revision compacted to, nil when there was nothing to do. A failed proposal
    /// (leadership lost, say) is tried again on the next check.
    func step() async -> Int64? {
        guard await store.status().role == .leader else { return nil }
        guard let target = Self.target(revision: store.machine.read { $0.revision },
                                       compacted: store.machine.read { $0.compactRevision }, retain: retain) else { return nil }
        var proposed: Int64?
        // Each applied step moves the compaction revision on; a step that did not (its command
        // failed) ends the check. The count bounds one check's work.
        for _ in 0..<10_000 where !Task.isCancelled {
            let (compacted, next) = store.machine.read { ($0.compactRevision, $0.compactionStep(toward: target, maxEvents: maxEventsPerStep)) }
            guard compacted < target else { break }
            if let proposed, compacted < proposed { break }  // the last step's command failed
            guard (try? await store.handleForwarded(.compact(revision: next))) != nil else { break }
            proposed = next
        }
        guard proposed != nil else { return nil }
        return store.machine.read { $0.compactRevision }
    }

    /// The revision to compact to, or nil while fewer than `2 * retain` revisions are retained.
    static func target(revision: Int64, compacted: Int64, retain: Int64) -> Int64? {
        revision - max(compacted, 1) >= 2 * retain ? revision - retain : nil
    }
}
