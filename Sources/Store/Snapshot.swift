/// Serialization of a whole `KeyValueStore` for Raft snapshots.
///
/// The image holds everything a replica needs to answer exactly as the original: revision, compact
/// revision, every key's retained history, the watch event log, the leases, the next lease id and
/// (from format 2) the recently applied request ids with their responses, in apply order. Maps are
/// written in sorted order, so equal stores give equal bytes.
///
/// From format 4 a watch event names the history record it repeats (its key and revision) instead
/// of copying it: the log holds every change since the last compaction with its previous version,
/// and while a backlog was placed (one revision, many tasks) the copies were most of a 150 MB image.
extension KeyValueStore {
    /// Format 1 had no applied requests, format 2 no alarms, format 3 copied every event's versions;
    /// older images still load.
    static let snapshotFormat: UInt8 = 4

    /// The store's snapshot image.
    public func snapshotBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        appendSnapshot(to: &bytes)
        return bytes
    }

    /// The image in an older `format` (2 or 3), as an older master wrote it: for tests of loading one.
    func snapshotBytes(format: UInt8) -> [UInt8] {
        precondition((2...Self.snapshotFormat).contains(format), "format \(format) is not written")
        var bytes: [UInt8] = []
        appendSnapshot(to: &bytes, format: format)
        return bytes
    }

    /// Appends the snapshot image to `buffer` (after a header its caller wrote, so the image is
    /// not copied again to get behind one).
    public func appendSnapshot(to buffer: inout [UInt8]) {
        appendSnapshot(to: &buffer, format: Self.snapshotFormat)
    }

    private func appendSnapshot(to buffer: inout [UInt8], format: UInt8) {
        let requests = appliedRequests.entries
        var w = ByteWriter()
        swap(&w.bytes, &buffer)
        defer { swap(&w.bytes, &buffer) }
        // Written into one allocation rather than doubled into: a 100,000-task image is over
        // 100 MB, and the copies and fresh pages of each doubling were a fifth of a leader's CPU
        // while it placed a backlog (snapshots every 20,000 entries).
        // Which event versions are in the history is looked up once, for the bound and the writing.
        let forms = eventForms()
        w.bytes.reserveCapacity(w.bytes.count + snapshotSizeBound(requests: requests, forms: forms))
        w.u8(format)
        w.int(revision)
        w.int(compactRevision)
        w.int(nextLeaseID)
        w.uvarint(UInt64(sortedKeys.count))
        for key in sortedKeys {
            let records = history[key] ?? []
            w.data(key)
            w.uvarint(UInt64(records.count))
            for record in records {
                w.int(record.main)
                w.optionalKV(record.kv)
            }
        }
        w.uvarint(UInt64(log.count))
        if format >= 4 {
            for (event, form) in zip(log, forms) { Self.writeEvent(event, form, to: &w) }
        } else {
            for event in log { w.event(event) }
        }
        let ids = leases.keys.sorted()
        w.uvarint(UInt64(ids.count))
        for id in ids {
            let lease = leases[id]!
            w.int(lease.id); w.int(lease.ttl); w.int(lease.expiry)
            let keys = lease.keys.sorted { $0.lexicographicallyPrecedes($1) }
            w.uvarint(UInt64(keys.count))
            for key in keys { w.data(key) }
        }
        w.uvarint(UInt64(requests.count))
        for (id, response) in requests {
            w.requestID(id)
            w.data(response)
        }
        let raised = alarms.sorted()
        if format >= 3 {
            w.uvarint(UInt64(raised.count))
            for alarm in raised { w.alarm(alarm) }
        }
    }

    /// Whether each event's version, and its previous one, is the identical record of the history.
    struct EventForm {
        var versionInHistory: Bool
        var previousInHistory: Bool
    }

    /// The form of every event of the log, in order.
    func eventForms() -> [EventForm] {
        log.map { event in
            let records = history[event.kv.key] ?? []
            return EventForm(versionInHistory: Self.record(in: records, at: event.kv.modRevision)?.kv == event.kv,
                             previousInHistory: event.prevKV.map { prev in
                                 prev.key == event.kv.key && Self.record(in: records, at: prev.modRevision)?.kv == prev
                             } ?? false)
        }
    }

    /// A watch event in format 4: its kind, then its version and its previous one, each either a
    /// reference to the identical history record (`EventVersion.inHistory`, with the key once) or
    /// written out (`snapshotSizeBound` counts it the same way).
    private static func writeEvent(_ event: WatchEvent, _ form: EventForm, to w: inout ByteWriter) {
        w.u8(event.kind.rawValue)
        if form.versionInHistory {
            w.u8(EventVersion.inHistory.rawValue)
            w.data(event.kv.key)
            w.int(event.kv.modRevision)
        } else {
            w.u8(EventVersion.written.rawValue)
            w.kv(event.kv)
        }
        guard let prev = event.prevKV else {
            w.u8(EventVersion.none.rawValue)
            return
        }
        if form.previousInHistory {
            w.u8(EventVersion.inHistory.rawValue)
            w.int(prev.modRevision)
        } else {
            w.u8(EventVersion.written.rawValue)
            w.kv(prev)
        }
    }

    /// Reads `writeEvent`'s form against the history already read.
    private static func readEvent(_ r: inout ByteReader, history: [[UInt8]: [Record]]) throws(StoreError) -> WatchEvent {
        let kind = try r.enumValue(WatchEvent.Kind.self)
        func fromHistory(_ key: [UInt8], _ revision: Int64) throws(StoreError) -> KeyValue {
            guard let records = history[key], let kv = record(in: records, at: revision)?.kv else {
                throw .malformed("a snapshot event names no version of its key at revision \(revision)")
            }
            return kv
        }
        let kv: KeyValue
        switch try r.enumValue(EventVersion.self) {
        case .inHistory: kv = try fromHistory(try r.data(), try r.int())
        case .written: kv = try r.kv()
        case .none: throw .malformed("a snapshot event without its version")
        }
        let prev: KeyValue?
        switch try r.enumValue(EventVersion.self) {
        case .inHistory: prev = try fromHistory(kv.key, try r.int())
        case .written: prev = try r.kv()
        case .none: prev = nil
        }
        return WatchEvent(kind: kind, kv: kv, prevKV: prev)
    }

    /// How a format-4 event carries one of its versions.
    enum EventVersion: UInt8 {
        case none = 0, written = 1, inHistory = 2
    }

    /// The record of a key's history made at `revision` itself, if one was.
    static func record(in records: [Record], at revision: Int64) -> Record? {
        guard let i = index(in: records, at: revision), records[i].main == revision else { return nil }
        return records[i]
    }

    /// At least the size of `snapshotBytes()`: a varint is at most 10 bytes, so a version costs
    /// its key and value plus at most 61, a lease or request its ids.
    /// - Parameter forms: `eventForms()`, when the caller has them already.
    func snapshotSizeBound(requests: [(id: RequestID, response: [UInt8])], forms: [EventForm]? = nil) -> Int {
        let perVersion = 64
        var size = 64
        for (key, records) in history {
            size += 15 + key.count
            for record in records { size += perVersion + (record.kv.map { $0.key.count + $0.value.count } ?? 0) }
        }
        // A format-4 event: its kind and two tags, then for each version either a reference (its
        // key once, and a revision) or the version written out. (Older formats, written only for
        // tests, may outgrow it; the buffer then grows.)
        let forms = forms ?? eventForms()
        for (event, form) in zip(log, forms) {
            size += 3 + (form.versionInHistory ? 20 + event.kv.key.count : perVersion + event.kv.key.count + event.kv.value.count)
            if let prev = event.prevKV {
                size += form.previousInHistory ? 10 : perVersion + prev.key.count + prev.value.count
            }
        }
        for lease in leases.values {
            size += 40 + lease.keys.reduce(0) { $0 + $1.count + 10 }
        }
        for request in requests { size += 40 + request.response.count }
        return size + alarms.count * 16
    }

    /// Rebuilds a store from `snapshotBytes()`; throws `StoreError.malformed` on any inconsistency
    /// (keys out of order, duplicate leases), since a bad snapshot must not become a divergent replica.
    public init(snapshot bytes: [UInt8]) throws(StoreError) {
        var r = ByteReader(bytes)
        let format = try r.u8()
        guard (1...Self.snapshotFormat).contains(format) else { throw .malformed("unknown snapshot format \(format)") }
        var store = KeyValueStore()
        store.revision = try r.int()
        store.compactRevision = try r.int()
        store.nextLeaseID = try r.int()
        let keyCount = try r.count()
        store.sortedKeys.reserveCapacity(keyCount)
        for _ in 0..<keyCount {
            let key = try r.data()
            if let last = store.sortedKeys.last, !last.lexicographicallyPrecedes(key) {
                throw .malformed("snapshot keys out of order")
            }
            let records = try r.list { (r: inout ByteReader) throws(StoreError) in
                Record(main: try r.int(), kv: try r.optionalKV())
            }
            if records.isEmpty { throw .malformed("snapshot key without history") }
            store.sortedKeys.append(key)
            store.history[key] = records
        }
        if format >= 4 {
            let history = store.history
            store.log = try r.list { (r: inout ByteReader) throws(StoreError) in try Self.readEvent(&r, history: history) }
        } else {
            store.log = try r.list { (r: inout ByteReader) throws(StoreError) in try r.event() }
        }
        let leaseCount = try r.count()
        for _ in 0..<leaseCount {
            let id = try r.int(), ttl = try r.int(), expiry = try r.int()
            let keys = try r.list { (r: inout ByteReader) throws(StoreError) in try r.data() }
            if store.leases[id] != nil { throw .malformed("duplicate lease \(id) in snapshot") }
            store.leases[id] = Lease(id: id, ttl: ttl, expiry: expiry, keys: Set(keys))
        }
        if format >= 2 {
            let requestCount = try r.count()
            for _ in 0..<requestCount {
                let id = try r.requestID()
                let response = try r.data()
                if store.appliedRequests.response(for: id) != nil { throw .malformed("duplicate request \(id) in snapshot") }
                store.appliedRequests.record(id, response: response)
            }
        }
        if format >= 3 {
            let alarmCount = try r.count()
            for _ in 0..<alarmCount {
                guard store.alarms.insert(try r.alarm()).inserted else { throw .malformed("duplicate alarm in snapshot") }
            }
        }
        try r.finish()
        store.dataBytes = store.countDataBytes()
        self = store
    }
}
