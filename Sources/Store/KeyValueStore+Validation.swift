// Validation, before any change, so a failing operation changes nothing.
extension KeyValueStore {
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
}
