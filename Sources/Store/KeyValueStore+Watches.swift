// The event log as watchers read it.
extension KeyValueStore {
    /// Every change to `key` (or the range up to `rangeEnd`) from `fromRevision` on, in revision order,
    /// as a watcher must receive them: no gaps, no duplicates. `fromRevision` 0 means "from the next
    /// revision" (nothing yet). `prevKV` includes each event's previous state, as etcd's watch option.
    /// A shell serves a watch by calling this once and then forwarding the events of each applied
    /// command (`apply(_:)`) that match.
    public func events(key: [UInt8], rangeEnd: [UInt8] = [], fromRevision: Int64, prevKV: Bool = false) throws(StoreError) -> [WatchEvent] {
        try validateRange(key: key, rangeEnd: rangeEnd)
        let from = fromRevision <= 0 ? revision + 1 : fromRevision
        if from < compactRevision { throw .compacted(compactRevision) }
        var low = 0, high = log.count
        while low < high {
            let mid = (low + high) / 2
            if log[mid].kv.modRevision < from { low = mid + 1 } else { high = mid }
        }
        var out: [WatchEvent] = []
        for event in log[low...] where Self.contains(event.kv.key, key: key, rangeEnd: rangeEnd) {
            var e = event
            if !prevKV { e.prevKV = nil }
            out.append(e)
        }
        return out
    }

    /// Whether an event concerns the watched key or range (for shells filtering live events).
    public static func matches(_ event: WatchEvent, key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        contains(event.kv.key, key: key, rangeEnd: rangeEnd)
    }

    /// Number of events retained for watchers (diagnostics and tests).
    public var retainedEventCount: Int { log.count }
}
