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

    /// An empty store at revision 1.
    public init() {}

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
        var kvs: [KeyValue] = []
        for key in keys(from: request.key, to: request.rangeEnd) {
            if let kv = kv(of: key, at: at) { kvs.append(kv) }
        }
        let count = Int64(kvs.count)
        if request.countOnly {
            return RangeResponse(revision: revision, kvs: [], more: false, count: count)
        }
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
        guard let records = history[key] else { return nil }
        // Records are few per key and reads mostly hit the newest: scan from the end.
        var i = records.count - 1
        while i >= 0 {
            if records[i].main <= at { return records[i].kv }
            i -= 1
        }
        return nil
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

    // MARK: Validation (before any change, so a failing operation changes nothing)

    func validateRange(key: [UInt8], rangeEnd: [UInt8]) throws(StoreError) {
        if key.isEmpty { throw .emptyKey }
        if !rangeEnd.isEmpty && rangeEnd != [0] && rangeEnd.lexicographicallyPrecedes(key) { throw .invalidRange }
    }

    func validateReadRevision(_ rev: Int64) throws(StoreError) {
        if rev > revision { throw .futureRevision(requested: rev, current: revision) }
        if rev > 0 && rev < compactRevision { throw .compacted(compactRevision) }
    }

    func validatePut(_ request: PutRequest) throws(StoreError) {
        if request.key.isEmpty { throw .emptyKey }
        let size = request.key.count + request.value.count
        if size > maxRequestBytes { throw .requestTooLarge(size: size, limit: maxRequestBytes) }
        if request.lease != 0 && leases[request.lease] == nil { throw .leaseNotFound(request.lease) }
    }

    /// The checks etcd makes on both branches of a txn before running it (`checkTxnRequest`): the
    /// request's shape, independent of the store's state.
    func validateShape(_ op: RequestOp) throws(StoreError) {
        switch op {
        case .range(let r): try validateRange(key: r.key, rangeEnd: r.rangeEnd)
        case .put(let p):
            if p.key.isEmpty { throw .emptyKey }
            let size = p.key.count + p.value.count
            if size > maxRequestBytes { throw .requestTooLarge(size: size, limit: maxRequestBytes) }
        case .deleteRange(let d): try validateRange(key: d.key, rangeEnd: d.rangeEnd)
        }
    }

    /// The checks etcd makes only on the branch that runs (`checkRequests`): leases and read
    /// revisions against the store's state.
    func validateState(_ op: RequestOp) throws(StoreError) {
        switch op {
        case .range(let r): try validateReadRevision(r.revision)
        case .put(let p): if p.lease != 0 && leases[p.lease] == nil { throw .leaseNotFound(p.lease) }
        case .deleteRange: break
        }
    }

    /// etcd refuses a txn branch that writes one key twice (two puts, or a put inside a deleted range),
    /// since the outcome would depend on op order within one revision.
    func validateNoDuplicates(_ ops: [RequestOp]) throws(StoreError) {
        var puts = Set<[UInt8]>()
        var deletes: [DeleteRangeRequest] = []
        for op in ops {
            switch op {
            case .put(let p): if !puts.insert(p.key).inserted { throw .duplicateKey }
            case .deleteRange(let d): deletes.append(d)
            case .range: break
            }
        }
        for key in puts {
            for d in deletes where Self.contains(key, key: d.key, rangeEnd: d.rangeEnd) { throw .duplicateKey }
        }
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

    /// Runs `success` if every compare holds, else `failure` (etcd's `Txn`). All writes share one new
    /// revision; a txn that writes nothing leaves the revision alone. As in etcd, both branches must be
    /// well formed, while leases and read revisions are checked on the branch that runs; everything is
    /// checked before the first write, so a failing txn changes nothing.
    public mutating func txn(_ request: TxnRequest) throws(StoreError) -> TxnResponse {
        for c in request.compares { try validateRange(key: c.key, rangeEnd: c.rangeEnd) }
        for op in request.success { try validateShape(op) }
        for op in request.failure { try validateShape(op) }
        try validateNoDuplicates(request.success)
        try validateNoDuplicates(request.failure)

        let succeeded = request.compares.allSatisfy(holds)
        let ops = succeeded ? request.success : request.failure
        for op in ops { try validateState(op) }
        let main = revision + 1
        var wrote = false
        var responses: [ResponseOp] = []
        for op in ops {
            switch op {
            case .range(let r):
                responses.append(.range(rangeUnchecked(r, current: wrote ? main : revision)))
            case .put(let p):
                let prev = writePut(p, at: main)
                wrote = true
                responses.append(.put(PutResponse(revision: main, prevKV: p.prevKV ? prev : nil)))
            case .deleteRange(let d):
                let prevs = writeDelete(key: d.key, rangeEnd: d.rangeEnd, at: main)
                if !prevs.isEmpty { wrote = true }
                responses.append(.deleteRange(DeleteRangeResponse(revision: main, deleted: Int64(prevs.count),
                                                                  prevKVs: d.prevKV ? prevs : [])))
            }
        }
        if wrote { revision = main }
        // etcd stamps every inner response with the txn's final header revision.
        for i in responses.indices {
            switch responses[i] {
            case .range(var r): r.revision = revision; responses[i] = .range(r)
            case .put(var p): p.revision = revision; responses[i] = .put(p)
            case .deleteRange(var d): d.revision = revision; responses[i] = .deleteRange(d)
            }
        }
        return TxnResponse(revision: revision, succeeded: succeeded, responses: responses)
    }

    /// Whether a compare holds now. As in etcd, a missing key compares as all-zero fields, except that
    /// a value compare on a missing key is false; with a range, every key in it must satisfy it.
    func holds(_ compare: Compare) -> Bool {
        var kvs: [KeyValue] = []
        for key in keys(from: compare.key, to: compare.rangeEnd) {
            if let kv = get(key) { kvs.append(kv) }
        }
        if kvs.isEmpty {
            if case .value = compare.target { return false }
            kvs = [KeyValue(key: compare.key, createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0)]
        }
        return kvs.allSatisfy { kv in
            let order: Int = switch compare.target {
            case .version(let v): Self.order(kv.version, v)
            case .createRevision(let v): Self.order(kv.createRevision, v)
            case .modRevision(let v): Self.order(kv.modRevision, v)
            case .lease(let v): Self.order(kv.lease, v)
            case .value(let v): kv.value == v ? 0 : (kv.value.lexicographicallyPrecedes(v) ? -1 : 1)
            }
            return switch compare.result {
            case .equal: order == 0
            case .greater: order > 0
            case .less: order < 0
            case .notEqual: order != 0
            }
        }
    }

    private static func order(_ a: Int64, _ b: Int64) -> Int { a == b ? 0 : (a < b ? -1 : 1) }

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

    /// How many of a key's oldest records a compaction at `revision` drops: all before the newest
    /// record at or before it (the key's state there), and that one too when it is a tombstone.
    private static func compactableRecords(_ records: [Record], at revision: Int64) -> Int {
        guard let last = records.lastIndex(where: { $0.main <= revision }) else { return 0 }
        return records[last].kv == nil ? last + 1 : last
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
        if history[key] == nil {
            sortedKeys.insert(key, at: lowerBound(key))
            history[key] = [record]
        } else {
            history[key]!.append(record)
        }
    }

    // MARK: Watches

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
