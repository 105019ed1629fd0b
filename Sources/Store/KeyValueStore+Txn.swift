// Transactions (etcd's `Txn`): compares, then one branch of operations at one revision.
extension KeyValueStore {
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
}
