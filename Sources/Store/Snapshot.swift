/// Serialization of a whole `KeyValueStore` for Raft snapshots.
///
/// The image holds everything a replica needs to answer exactly as the original: revision, compact
/// revision, every key's retained history, the watch event log, the leases, the next lease id and
/// (from format 2) the recently applied request ids with their responses, in apply order. Maps are
/// written in sorted order, so equal stores give equal bytes.
extension KeyValueStore {
    /// Format 1 had no applied requests, format 2 no alarms; older images still load (with none).
    static let snapshotFormat: UInt8 = 3

    /// The store's snapshot image.
    public func snapshotBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        appendSnapshot(to: &bytes)
        return bytes
    }

    /// Appends the snapshot image to `buffer` (after a header its caller wrote, so the image is
    /// not copied again to get behind one).
    public func appendSnapshot(to buffer: inout [UInt8]) {
        let requests = appliedRequests.entries
        var w = ByteWriter()
        swap(&w.bytes, &buffer)
        defer { swap(&w.bytes, &buffer) }
        // Written into one allocation rather than doubled into: a 100,000-task image is over
        // 100 MB, and the copies and fresh pages of each doubling were a fifth of a leader's CPU
        // while it placed a backlog (snapshots every 20,000 entries).
        w.bytes.reserveCapacity(w.bytes.count + snapshotSizeBound(requests: requests))
        w.u8(Self.snapshotFormat)
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
        for event in log { w.event(event) }
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
        w.uvarint(UInt64(raised.count))
        for alarm in raised { w.alarm(alarm) }
    }

    /// At least the size of `snapshotBytes()`: a varint is at most 10 bytes, so a version costs
    /// its key and value plus at most 61, a watch event two of those, a lease or request its ids.
    func snapshotSizeBound(requests: [(id: RequestID, response: [UInt8])]) -> Int {
        let perVersion = 64
        var size = 64
        for (key, records) in history {
            size += 15 + key.count
            for record in records { size += perVersion + (record.kv.map { $0.key.count + $0.value.count } ?? 0) }
        }
        for event in log {
            size += 1 + perVersion * 2 + event.kv.key.count + event.kv.value.count
            if let prev = event.prevKV { size += prev.key.count + prev.value.count }
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
        store.log = try r.list { (r: inout ByteReader) throws(StoreError) in try r.event() }
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
