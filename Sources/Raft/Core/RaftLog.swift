/// The in-memory view of one server's log: the latest snapshot, the entries after it, and how far
/// they are committed, applied and persisted.
///
/// The core never reads storage; it is given the persisted log at start (see `LogStorage`) and keeps
/// the entries since the last snapshot here. Entries after `stableIndex` are not yet durable.
struct RaftLog: Sendable {
    /// The latest snapshot, persisted or not; its index is the log's offset.
    private(set) var snapshot: Snapshot
    /// A snapshot received from the leader that is not yet persisted and applied.
    private(set) var pendingSnapshot: Snapshot?
    /// Entries after `snapshot.metadata.index`, contiguous.
    private(set) var entries: [Entry]
    /// Highest index known to be committed.
    private(set) var committed: UInt64
    /// Highest index handed to the application in a `Ready`.
    var applied: UInt64
    /// Highest index known to be durable on this server.
    private(set) var stableIndex: UInt64

    init(persisted: PersistedState) {
        snapshot = persisted.snapshot
        entries = persisted.entries
        pendingSnapshot = nil
        let offset = persisted.snapshot.metadata.index
        committed = max(persisted.hardState.commit, offset)
        applied = offset
        stableIndex = offset + UInt64(persisted.entries.count)
        committed = min(committed, stableIndex)
    }

    var offset: UInt64 { snapshot.metadata.index }
    var firstIndex: UInt64 { offset + 1 }
    var lastIndex: UInt64 { offset + UInt64(entries.count) }
    var lastTerm: UInt64 { term(at: lastIndex) ?? 0 }

    /// The term of the entry at `index`, or nil when it was compacted or does not exist yet.
    func term(at index: UInt64) -> UInt64? {
        if index == offset { return snapshot.metadata.term }
        guard index > offset, index <= lastIndex else { return nil }
        return entries[Int(index - firstIndex)].term
    }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool {
        self.term(at: index) == term
    }

    /// Raft §5.4.1: a candidate's log is at least as up-to-date as ours.
    func isUpToDate(lastIndex candidateIndex: UInt64, lastTerm candidateTerm: UInt64) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// Entries in `lo..<hi`, at most `maxCount` of them and about `maxBytes` (always at least one).
    func slice(from lo: UInt64, to hi: UInt64, maxCount: Int, maxBytes: Int) -> ArraySlice<Entry> {
        guard lo >= firstIndex, lo < hi, hi <= lastIndex + 1 else { return [] }
        let start = Int(lo - firstIndex)
        let (limit, overflow) = start.addingReportingOverflow(maxCount)
        var end = min(Int(hi - firstIndex), overflow ? Int.max : limit)
        var bytes = 0
        for i in start..<end {
            bytes += entries[i].data.count + 24
            if bytes > maxBytes && i > start {
                end = i
                break
            }
        }
        return entries[start..<end]
    }

    /// Entries not yet durable.
    var unstableEntries: ArraySlice<Entry> {
        guard stableIndex < lastIndex else { return [] }
        return entries[Int(max(stableIndex + 1, firstIndex) - firstIndex)...]
    }

    /// Committed entries not yet handed to the application, at most `maxCount`.
    func committedEntriesToApply(maxCount: Int) -> ArraySlice<Entry> {
        guard pendingSnapshot == nil, committed > applied else { return [] }
        let lo = max(applied + 1, firstIndex)
        return slice(from: lo, to: committed + 1, maxCount: maxCount, maxBytes: Int.max)
    }

    var hasEntriesToApply: Bool { pendingSnapshot == nil && committed > applied }

    /// Fast backtracking (thesis §5.3, etcd's findConflictByTerm): the largest index at or below
    /// `index` whose term is at most `term`, with that term. A leader skips every entry in between.
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var i = min(index, lastIndex)
        while i > offset {
            if let t = self.term(at: i), t <= term { return (i, t) }
            i -= 1
        }
        return (offset, snapshot.metadata.term)
    }

    /// Appends new entries at the end (leader side).
    mutating func append(_ new: [Entry]) {
        entries.append(contentsOf: new)
    }

    /// Follower side of AppendEntries (Raft §5.3): if our log matches at (`index`, `logTerm`), append
    /// `new`, truncating from the first conflicting entry, and advance the commit index.
    /// Returns the index of the last new entry, or nil when the log does not match.
    /// Throws when the leader would overwrite a committed entry, which only a faulty peer asks.
    mutating func maybeAppend(index: UInt64, logTerm: UInt64, commit: UInt64, new: [Entry]) throws(StepRejection) -> UInt64? {
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = index + UInt64(new.count)
        if let conflict = new.first(where: { !matchTerm($0.index, $0.term) }) {
            if conflict.index <= committed {
                throw StepRejection("append would overwrite committed entry \(conflict.index) (committed \(committed))")
            }
            if conflict.index <= lastIndex {
                // Entries from here on are replaced by the leader's: they cannot be committed (§5.3).
                entries.removeLast(Int(lastIndex - conflict.index + 1))
                stableIndex = min(stableIndex, conflict.index - 1)
            }
            entries.append(contentsOf: new[Int(conflict.index - new[0].index)...])
        }
        self.commit(to: min(commit, lastNew))
        return lastNew
    }

    mutating func commit(to index: UInt64) {
        if index > committed && index <= lastIndex { committed = index }
    }

    /// Follower side of InstallSnapshot. Returns false when the log already holds the snapshot's
    /// last entry (then only the commit index moves), true when the log is replaced.
    mutating func restore(_ snap: Snapshot) -> Bool {
        let meta = snap.metadata
        if meta.index <= committed { return false }
        if matchTerm(meta.index, meta.term) {
            commit(to: meta.index)
            return false
        }
        snapshot = snap
        pendingSnapshot = snap
        entries = []
        committed = meta.index
        stableIndex = min(stableIndex, meta.index)
        return true
    }

    /// Marks the entries up to (`index`, `term`) durable; ignored if the log changed since.
    mutating func stableTo(index: UInt64, term: UInt64) {
        if matchTerm(index, term), index > stableIndex { stableIndex = index }
    }

    /// The pending snapshot is persisted and applied.
    mutating func snapshotApplied(index: UInt64) {
        if pendingSnapshot?.metadata.index == index {
            pendingSnapshot = nil
            stableIndex = max(stableIndex, index)
            applied = max(applied, index)
        }
    }

    /// Local compaction: replaces the entries up to `snap.metadata.index` (which must be applied).
    mutating func compact(to snap: Snapshot) {
        let idx = snap.metadata.index
        guard idx > offset, idx <= applied, idx <= lastIndex else { return }
        entries.removeFirst(Int(idx - offset))
        snapshot = snap
    }
}

/// Why the core refused a message: it came from a faulty or confused peer. The message changed
/// nothing; the driver logs the reason.
public struct StepRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    init(_ description: String) {
        self.description = description
    }
}
