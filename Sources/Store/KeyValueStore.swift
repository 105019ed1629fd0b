/// A deterministic multi-version key-value store with etcd's semantics (etcd's `mvcc` package).
///
/// Every write bumps one global `revision` (an empty store is at revision 1 and the first put makes
/// revision 2, as in etcd); all writes of one txn or lease revoke share one revision. Each key keeps its
/// history, so reads at an older revision work until `compact` discards it, and an event log feeds
/// watchers from any retained revision. It is a value type with no clock and no randomness: replicas
/// that apply the same commands hold equal stores, which is what Raft replication needs.
public struct KeyValueStore: Sendable, Equatable {
    /// One version of a key: its state from revision `main` on (`kv == nil` is a deletion tombstone).
    struct Record: Sendable, Equatable {
        var main: Int64
        var kv: KeyValue?
    }

    /// A lease: keys attached to it are deleted when it is revoked.
    struct Lease: Sendable, Equatable {
        var id: LeaseID
        var ttl: Int64
        /// When it expires, in milliseconds of the leader's clock that stamped the grant/keep-alive.
        var expiry: Int64
        var keys: Set<[UInt8]>
    }

    /// The revision of the last write (1 for an empty store).
    public internal(set) var revision: Int64 = 1
    /// Reads below this revision fail with `StoreError.compacted`; 0 until the first compaction.
    public internal(set) var compactRevision: Int64 = 0
    /// Every key with retained history, oldest record first.
    var history: [[UInt8]: [Record]] = [:]
    /// The keys of `history`, sorted bytewise, so ranges are binary searches.
    var sortedKeys: [[UInt8]] = []
    /// Every change from `compactRevision` on, in revision order (prevKV always filled in).
    var log: [WatchEvent] = []
    var leases: [LeaseID: Lease] = [:]
    /// The id handed out by a grant that asks for id 0; deterministic so replicas agree.
    var nextLeaseID: LeaseID = 1
    /// The responses of recently applied identified requests, so a duplicate is not applied twice.
    public internal(set) var appliedRequests = AppliedRequests()
    /// The alarms raised (`StoreQuota`); replicated, so every replica caps writes alike.
    public internal(set) var alarms: Set<StoreAlarm> = []
    /// Bytes retained: every version of every key (key, value and `recordOverhead`) and every lease.
    /// Deterministic, so replicas agree on it; what the quota is measured against.
    public internal(set) var dataBytes: Int64 = 0

    /// An empty store at revision 1.
    public init() {}

    /// Gives this copy storage of its own now, rather than at its next write.
    ///
    /// The store is copy-on-write: a copy taken for a snapshot shares every container with the
    /// live store, and the live store's next write copies each one it touches (100,000 keys, their
    /// event log: hundreds of milliseconds on a busy machine). `KVStateMachine` calls this on the
    /// live copy outside its lock, so that copying does not hold up reads as a write would.
    /// `reserveCapacity` copies a shared buffer and leaves a unique one alone.
    mutating func detachStorage() {
        history.reserveCapacity(history.count)
        sortedKeys.reserveCapacity(sortedKeys.count)
        log.reserveCapacity(log.count)
        leases.reserveCapacity(leases.count)
        alarms.reserveCapacity(alarms.count)
        appliedRequests.detachStorage()
    }

    // MARK: Reads

    /// Reads a key or range at the current or an older revision (etcd's `Range`).
    public func range(_ request: RangeRequest) throws(StoreError) -> RangeResponse {
        try validateRange(key: request.key, rangeEnd: request.rangeEnd)
        try validateReadRevision(request.revision)
        return rangeUnchecked(request, current: revision)
    }

    /// Convenience for `range(RangeRequest(...))`.
    public func range(_ key: [UInt8], rangeEnd: [UInt8] = [], revision: Int64 = 0, limit: Int64 = 0,
                      countOnly: Bool = false, keysOnly: Bool = false,
                      sortOrder: SortOrder = .none, sortTarget: SortTarget = .key) throws(StoreError) -> RangeResponse {
        try range(RangeRequest(key: key, rangeEnd: rangeEnd, revision: revision, limit: limit, countOnly: countOnly,
                               keysOnly: keysOnly, sortOrder: sortOrder, sortTarget: sortTarget))
    }

    /// The current state of one key, nil when it does not exist.
    public func get(_ key: [UInt8]) -> KeyValue? {
        history[key]?.last?.kv
    }

    /// Reads without validation; `current` is the revision a request for revision 0 sees (inside a txn
    /// that already wrote, that is the txn's own revision, so later ops see earlier ones).
    func rangeUnchecked(_ request: RangeRequest, current: Int64) -> RangeResponse {
        // etcd reads the current revision for any revision <= 0.
        let at = request.revision <= 0 ? current : request.revision
        let keys = keys(from: request.key, to: request.rangeEnd)
        if request.countOnly {
            let count = keys.reduce(into: Int64(0)) { count, key in if exists(key, at: at) { count += 1 } }
            return RangeResponse(revision: revision, kvs: [], more: false, count: count)
        }
        let inKeyOrder = request.sortTarget == .key && request.sortOrder != .descend
        if inKeyOrder && request.limit > 0 {
            return limitedInKeyOrder(request, keys: keys, at: at)
        }
        var kvs: [KeyValue] = []
        for key in keys {
            if let kv = kv(of: key, at: at) { kvs.append(kv) }
        }
        let count = Int64(kvs.count)
        sort(&kvs, order: request.sortOrder, target: request.sortTarget)
        var more = false
        if request.limit > 0 && count > request.limit {
            kvs.removeLast(kvs.count - Int(request.limit))
            more = true
        }
        if request.keysOnly {
            for i in kvs.indices { kvs[i].value = [] }
        }
        return RangeResponse(revision: revision, kvs: kvs, more: more, count: count)
    }

    /// A limited read in key order: copies `limit` values, and past them only counts (or, when the
    /// caller does not want the total, looks for one more key to set `more`). Paging through a
    /// large prefix then costs each page its own size instead of the whole range's.
    private func limitedInKeyOrder(_ request: RangeRequest, keys: ArraySlice<[UInt8]>, at: Int64) -> RangeResponse {
        var kvs: [KeyValue] = []
        kvs.reserveCapacity(Int(min(request.limit, Int64(keys.count))))
        var index = keys.startIndex
        while index < keys.endIndex && kvs.count < request.limit {
            if var kv = kv(of: keys[index], at: at) {
                if request.keysOnly { kv.value = [] }
                kvs.append(kv)
            }
            index += 1
        }
        var beyond: Int64 = 0
        while index < keys.endIndex {
            if exists(keys[index], at: at) {
                beyond += 1
                if !request.countTotal { break }
            }
            index += 1
        }
        let count = request.countTotal ? Int64(kvs.count) + beyond : Int64(kvs.count)
        return RangeResponse(revision: revision, kvs: kvs, more: beyond > 0, count: count)
    }

    /// Whether `key` has a live version at revision `at`, without copying it.
    func exists(_ key: [UInt8], at: Int64) -> Bool {
        guard let records = history[key], let i = Self.index(in: records, at: at) else { return false }
        return records[i].kv != nil
    }

    private func sort(_ kvs: inout [KeyValue], order: SortOrder, target: SortTarget) {
        // Keys come out ascending already; like etcd, "none" with another target means ascending.
        let order = order == .none && target != .key ? .ascend : order
        if order == .none || (order == .ascend && target == .key) { return }
        let ascending: (KeyValue, KeyValue) -> Bool = switch target {
        case .key: { $0.key.lexicographicallyPrecedes($1.key) }
        case .version: { $0.version < $1.version }
        case .create: { $0.createRevision < $1.createRevision }
        case .mod: { $0.modRevision < $1.modRevision }
        case .value: { $0.value.lexicographicallyPrecedes($1.value) }
        }
        // A stable sort keeps equal elements in key order, so results are deterministic.
        let indexed = kvs.enumerated().map { ($0.offset, $0.element) }
        let sorted = indexed.sorted { a, b in
            if order == .descend {
                if ascending(b.1, a.1) { return true }
                if ascending(a.1, b.1) { return false }
            } else {
                if ascending(a.1, b.1) { return true }
                if ascending(b.1, a.1) { return false }
            }
            return a.0 < b.0
        }
        kvs = sorted.map(\.1)
    }

    /// The state of `key` as of revision `at` (nil: absent then).
    func kv(of key: [UInt8], at: Int64) -> KeyValue? {
        guard let records = history[key], let i = Self.index(in: records, at: at) else { return nil }
        return records[i].kv
    }

    /// The record of `records` in force at revision `at`. Records are few per key and reads
    /// mostly hit the newest: the scan starts from the end.
    static func index(in records: [Record], at: Int64) -> Int? {
        records.lastIndex { $0.main <= at }
    }

    /// The keys with history in [key, rangeEnd) under etcd's conventions for `rangeEnd`.
    func keys(from key: [UInt8], to rangeEnd: [UInt8]) -> ArraySlice<[UInt8]> {
        if rangeEnd.isEmpty {
            let i = lowerBound(key)
            return i < sortedKeys.count && sortedKeys[i] == key ? sortedKeys[i...i] : []
        }
        let start = lowerBound(key)
        let end = rangeEnd == [0] ? sortedKeys.count : lowerBound(rangeEnd)
        return start < end ? sortedKeys[start..<end] : []
    }

    /// The first index of `sortedKeys` whose key is >= `key`.
    func lowerBound(_ key: [UInt8]) -> Int {
        var low = 0, high = sortedKeys.count
        while low < high {
            let mid = (low + high) / 2
            if sortedKeys[mid].lexicographicallyPrecedes(key) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Whether `candidate` falls in the range [key, rangeEnd) under etcd's conventions.
    static func contains(_ candidate: [UInt8], key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        if rangeEnd.isEmpty { return candidate == key }
        if candidate.lexicographicallyPrecedes(key) { return false }
        return rangeEnd == [0] || candidate.lexicographicallyPrecedes(rangeEnd)
    }

    // MARK: Writes

    /// Writes one key (etcd's `Put`): a new revision, the key's version + 1, attached to `lease`.
    @discardableResult
    public mutating func put(_ request: PutRequest) throws(StoreError) -> PutResponse {
        try validatePut(request)
        let main = revision + 1
        let prev = writePut(request, at: main)
        revision = main
        return PutResponse(revision: main, prevKV: request.prevKV ? prev : nil)
    }

    /// Convenience for `put(PutRequest(...))`.
    @discardableResult
    public mutating func put(_ key: [UInt8], _ value: [UInt8], lease: LeaseID = 0, prevKV: Bool = false) throws(StoreError) -> PutResponse {
        try put(PutRequest(key: key, value: value, lease: lease, prevKV: prevKV))
    }

    /// Deletes a key or range (etcd's `DeleteRange`); deleting nothing does not bump the revision.
    @discardableResult
    public mutating func deleteRange(_ request: DeleteRangeRequest) throws(StoreError) -> DeleteRangeResponse {
        try validateRange(key: request.key, rangeEnd: request.rangeEnd)
        let main = revision + 1
        let prevs = writeDelete(key: request.key, rangeEnd: request.rangeEnd, at: main)
        if !prevs.isEmpty { revision = main }
        return DeleteRangeResponse(revision: revision, deleted: Int64(prevs.count), prevKVs: request.prevKV ? prevs : [])
    }

    /// Convenience for `deleteRange(DeleteRangeRequest(...))`.
    @discardableResult
    public mutating func deleteRange(_ key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) throws(StoreError) -> DeleteRangeResponse {
        try deleteRange(DeleteRangeRequest(key: key, rangeEnd: rangeEnd, prevKV: prevKV))
    }

    /// Appends a put record at `main` and returns the key's previous state.
    mutating func writePut(_ request: PutRequest, at main: Int64) -> KeyValue? {
        let prev = get(request.key)
        let kv = KeyValue(key: request.key, createRevision: prev?.createRevision ?? main, modRevision: main,
                          version: (prev?.version ?? 0) + 1, value: request.value, lease: request.lease)
        append(Record(main: main, kv: kv), for: request.key)
        if let prev, prev.lease != 0, prev.lease != request.lease { leases[prev.lease]?.keys.remove(request.key) }
        if request.lease != 0 { leases[request.lease]?.keys.insert(request.key) }
        log.append(WatchEvent(kind: .put, kv: kv, prevKV: prev))
        return prev
    }

    /// Appends tombstones at `main` for every live key in the range; returns their previous states.
    mutating func writeDelete(key: [UInt8], rangeEnd: [UInt8], at main: Int64) -> [KeyValue] {
        var prevs: [KeyValue] = []
        for k in keys(from: key, to: rangeEnd) {
            if let kv = get(k) { prevs.append(kv) }
        }
        for prev in prevs { delete(prev, at: main) }
        return prevs
    }

    mutating func delete(_ prev: KeyValue, at main: Int64) {
        append(Record(main: main, kv: nil), for: prev.key)
        if prev.lease != 0 { leases[prev.lease]?.keys.remove(prev.key) }
        let tombstone = KeyValue(key: prev.key, createRevision: 0, modRevision: main, version: 0, value: [], lease: 0)
        log.append(WatchEvent(kind: .delete, kv: tombstone, prevKV: prev))
    }

    private mutating func append(_ record: Record, for key: [UInt8]) {
        dataBytes += Self.cost(key: key, record.kv)
        if history[key] == nil {
            sortedKeys.insert(key, at: lowerBound(key))
            history[key] = [record]
        } else {
            history[key]!.append(record)
        }
    }
}
