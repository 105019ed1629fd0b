extension KeyValueStore {
    /// Discards history before `revision` (etcd's `Compact`): reads below it fail from now on. Each key
    /// keeps its newest version at or before `revision` unless that is a deletion. The revision itself
    /// does not change.
    public mutating func compact(_ revision: Int64) throws(StoreError) {
        if revision <= compactRevision { throw .compacted(compactRevision) }
        if revision > self.revision { throw .futureRevision(requested: revision, current: self.revision) }
        // Only keys written since the last compaction can have records to drop (each key keeps at
        // most one record at or before `compactRevision`), and the event log lists exactly those
        // writes: so the work is proportional to the revisions compacted, not to all keys. The
        // records are trimmed in place through `history.values` (assigning while iterating a copy
        // of the dictionary copied all of it).
        // Writes at `revision` itself count too (a deletion there drops the key's older state),
        // though their events stay in the log.
        let firstKept = log.firstIndex { $0.kv.modRevision >= revision } ?? log.count
        let firstAfter = log[firstKept...].firstIndex { $0.kv.modRevision > revision } ?? log.count
        var touched = Set<[UInt8]>()
        for event in log[..<firstAfter] { touched.insert(event.kv.key) }
        var emptied = Set<[UInt8]>()
        for key in touched {
            guard let index = history.index(forKey: key) else { continue }
            let drop = Self.compactableRecords(history.values[index], at: revision)
            for record in history.values[index].prefix(drop) { dataBytes -= Self.cost(key: key, record.kv) }
            if drop == history.values[index].count {
                emptied.insert(key)
            } else if drop > 0 {
                history.values[index].removeFirst(drop)
            }
        }
        for key in emptied { history[key] = nil }
        if !emptied.isEmpty { sortedKeys.removeAll { emptied.contains($0) } }
        // Events at the compaction revision stay: a watch from `revision` is still served.
        log.removeFirst(firstKept)
        compactRevision = revision
    }

    /// The revision a compaction toward `target` should stop at so that it drops at most about
    /// `maxEvents` events (more only when one revision holds more than that): the work of a
    /// compaction, and how long it holds the store, grows with the events it drops.
    public func compactionStep(toward target: Int64, maxEvents: Int) -> Int64 {
        precondition(maxEvents > 0, "maxEvents must be positive")
        guard log.count > maxEvents else { return target }
        // Compacting to a revision drops the events below it: those before the event at `maxEvents`.
        return min(target, max(log[maxEvents].kv.modRevision, compactRevision + 1))
    }

    /// How many of a key's oldest records a compaction at `revision` drops: all before the newest
    /// record at or before it (the key's state there), and that one too when it is a tombstone.
    private static func compactableRecords(_ records: [Record], at revision: Int64) -> Int {
        guard let last = records.lastIndex(where: { $0.main <= revision }) else { return 0 }
        return records[last].kv == nil ? last + 1 : last
    }
}
