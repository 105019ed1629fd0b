import Store

/// Why a key prefix (`master --etcd-prefix`) cannot be used.
public enum KeyPrefixError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The prefix breaks one of `NamespacedStore.validate`'s rules; the text says which.
    case invalid(prefix: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let prefix, let reason): "--etcd-prefix \"\(prefix)\": \(reason)"
        }
    }
}

/// A `ClusterStore` whose keys all live under `prefix` in `base`: etcd's `clientv3/namespace`, so
/// several clusters (or other users) can share one etcd without seeing each other's keys.
///
/// Every key and range end in a request gets the prefix (ranges, puts, deletes, txn compares and
/// operations, watches); every key in an answer (range results, previous values, watch events,
/// a lease's attached keys) loses it. A range end of `"\0"` ("every key from `key` on") becomes the
/// end of the prefix's own range, so no request reaches beyond the prefix. Revisions, leases and
/// compaction are etcd's own and shared by everyone in that etcd: a revision seen here is etcd's
/// revision, and `compact` compacts the whole etcd (which is why masters compact only when told to).
///
/// As with clientv3/namespace, a namespace is every key that starts with `prefix`, so the namespace
/// "/team" includes "/team0/..." too, and a range "to the end" in "/team" would reach keys of a
/// namespace "/team0". The masters never make such a range (every key they read or write starts
/// with "/orchestrator/"), so clusters with prefixes "/team" and "/team0" still never meet.
///
/// Requests are checked before the prefix is added, so an empty key or an inverted range is refused
/// with the same `StoreError` as without a prefix (after prefixing, an empty key would look valid).
public struct NamespacedStore<Base: ClusterStore>: ClusterStore {
    /// The store every request goes to.
    public let base: Base
    /// Prepended to every key; never empty (an empty prefix needs no layer).
    public let prefix: [UInt8]
    /// The end of the prefix's range: the first key after every key that starts with `prefix`.
    let prefixEnd: [UInt8]

    /// - Parameter prefix: a prefix `validate` accepts and that is not empty.
    public init(base: Base, prefix: [UInt8]) {
        precondition(!prefix.isEmpty, "an empty prefix needs no NamespacedStore")
        self.base = base
        self.prefix = prefix
        self.prefixEnd = KeyRange.prefixEnd(prefix)
    }

    /// The longest prefix accepted, in bytes: keys count against etcd's request size, and a prefix
    /// is a name, not data.
    public static var maxPrefixBytes: Int { 256 }

    /// Checks a `--etcd-prefix` value. Empty is accepted and means no prefix (keys as they have
    /// always been, `/orchestrator/...`). Otherwise the prefix must start with `/` (etcd's key
    /// convention, and so `etcdctl get --prefix P` finds exactly our keys), must not end with `/`
    /// (every key the masters write starts with one, so a trailing slash would double it), and
    /// must be printable ASCII without spaces, at most `maxPrefixBytes` long.
    public static func validate(_ prefix: String) throws(KeyPrefixError) {
        if prefix.isEmpty { return }
        func fail(_ reason: String) -> KeyPrefixError { .invalid(prefix: prefix, reason: reason) }
        guard prefix.utf8.count <= maxPrefixBytes else { throw fail("longer than \(maxPrefixBytes) bytes") }
        guard prefix.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw fail("only printable ASCII without spaces is allowed (e.g. /team-a)")
        }
        guard prefix.hasPrefix("/") else { throw fail("must start with '/' (e.g. /\(prefix))") }
        guard prefix.count > 1 else { throw fail("'/' alone is not a prefix: leave the flag out for no prefix, or name one (e.g. /team-a)") }
        guard !prefix.hasSuffix("/") else {
            throw fail("must not end with '/' (the masters' keys start with one): use \(prefix.dropLast(prefix.reversed().prefix { $0 == "/" }.count))")
        }
    }

    // MARK: - Keys in and out

    /// `key` inside the prefix.
    func inside(_ key: [UInt8]) -> [UInt8] { prefix + key }

    /// A range end inside the prefix (clientv3/namespace's `prefixInterval`): none stays none,
    /// `"\0"` ("to the end of the key space") becomes the end of the prefix's range, any other end
    /// gets the prefix like a key.
    func insideEnd(_ end: [UInt8]) -> [UInt8] {
        if end.isEmpty { return [] }
        if end == [0] { return prefixEnd }
        return prefix + end
    }

    /// `key` as the caller knows it. Keys in answers come from ranges inside the prefix, so they
    /// carry it; one that does not (it cannot happen) is returned as it is rather than mangled.
    func outside(_ key: [UInt8]) -> [UInt8] {
        key.starts(with: prefix) ? Array(key.dropFirst(prefix.count)) : key
    }

    func outside(_ kv: KeyValue) -> KeyValue {
        var kv = kv
        kv.key = outside(kv.key)
        return kv
    }

    func checked(key: [UInt8], rangeEnd: [UInt8]) throws(StoreError) {
        if key.isEmpty { throw .emptyKey }
        if !rangeEnd.isEmpty && rangeEnd != [0] && rangeEnd.lexicographicallyPrecedes(key) { throw .invalidRange }
    }

    func inside(_ r: RangeRequest) throws(StoreError) -> RangeRequest {
        try checked(key: r.key, rangeEnd: r.rangeEnd)
        var r = r
        r.key = inside(r.key)
        r.rangeEnd = insideEnd(r.rangeEnd)
        return r
    }

    func inside(_ p: PutRequest) throws(StoreError) -> PutRequest {
        if p.key.isEmpty { throw .emptyKey }
        var p = p
        p.key = inside(p.key)
        return p
    }

    func inside(_ d: DeleteRangeRequest) throws(StoreError) -> DeleteRangeRequest {
        try checked(key: d.key, rangeEnd: d.rangeEnd)
        var d = d
        d.key = inside(d.key)
        d.rangeEnd = insideEnd(d.rangeEnd)
        return d
    }

    func inside(_ op: RequestOp) throws(StoreError) -> RequestOp {
        switch op {
        case .range(let r): .range(try inside(r))
        case .put(let p): .put(try inside(p))
        case .deleteRange(let d): .deleteRange(try inside(d))
        }
    }

    func outside(_ r: RangeResponse) -> RangeResponse {
        var r = r
        r.kvs = r.kvs.map(outside)
        return r
    }

    func outside(_ p: PutResponse) -> PutResponse {
        var p = p
        p.prevKV = p.prevKV.map(outside)
        return p
    }

    func outside(_ d: DeleteRangeResponse) -> DeleteRangeResponse {
        var d = d
        d.prevKVs = d.prevKVs.map(outside)
        return d
    }

    func outside(_ op: ResponseOp) -> ResponseOp {
        switch op {
        case .range(let r): .range(outside(r))
        case .put(let p): .put(outside(p))
        case .deleteRange(let d): .deleteRange(outside(d))
        }
    }

    func outside(_ event: WatchEvent) -> WatchEvent {
        WatchEvent(kind: event.kind, kv: outside(event.kv), prevKV: event.prevKV.map(outside))
    }

    // MARK: - ClusterStore

    public func range(_ request: RangeRequest, consistency: ReadConsistency) async throws -> RangeResponse {
        outside(try await base.range(try inside(request), consistency: consistency))
    }

    public func put(_ request: PutRequest) async throws -> PutResponse {
        outside(try await base.put(try inside(request)))
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws -> DeleteRangeResponse {
        outside(try await base.deleteRange(try inside(request)))
    }

    public func txn(_ request: TxnRequest) async throws -> TxnResponse {
        let compares = try request.compares.map { (c: Compare) throws(StoreError) -> Compare in
            try checked(key: c.key, rangeEnd: c.rangeEnd)
            var c = c
            c.key = inside(c.key)
            c.rangeEnd = insideEnd(c.rangeEnd)
            return c
        }
        let prefixed = TxnRequest(compares: compares, success: try request.success.map(inside), failure: try request.failure.map(inside))
        var response = try await base.txn(prefixed)
        response.responses = response.responses.map(outside)
        return response
    }

    /// Compacts the whole etcd, not only this prefix: etcd's history is one for every key.
    public func compact(revision: Int64) async throws {
        try await base.compact(revision: revision)
    }

    public func grantLease(ttl: Int64, id: LeaseID) async throws -> LeaseGrant {
        try await base.grantLease(ttl: ttl, id: id)
    }

    public func keepAlive(_ id: LeaseID) async throws -> LeaseGrant {
        try await base.keepAlive(id)
    }

    public func revokeLease(_ id: LeaseID) async throws {
        try await base.revokeLease(id)
    }

    /// The lease's keys within the prefix, without it; keys another user of the etcd attached to
    /// the same lease are not ours to report.
    public func timeToLive(_ id: LeaseID) async throws -> LeaseStatus {
        var status = try await base.timeToLive(id)
        status.keys = status.keys.filter { $0.starts(with: prefix) }.map(outside)
        return status
    }

    public func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        do {
            try checked(key: key, rangeEnd: rangeEnd)
        } catch {
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
        let events = base.watch(key: inside(key), rangeEnd: insideEnd(rangeEnd), fromRevision: fromRevision, prevKV: prevKV)
        let namespace = self
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    for try await response in events {
                        continuation.yield(WatchResponse(revision: response.revision, events: response.events.map(namespace.outside)))
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
