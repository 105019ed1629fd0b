/// Leases (etcd's `lease` package), kept deterministic: the store never expires a lease by itself.
///
/// Time enters only as arguments, in milliseconds of the leader's clock: the leader stamps grants and
/// keep-alives with its `now`, asks `expiredLeases(now:)` on its own ticks, and proposes a revoke for
/// each expired lease. Every replica applies the same revokes at the same log positions, so all agree
/// on which keys vanished at which revision, whatever their local clocks say.
extension KeyValueStore {
    /// Creates a lease (etcd's `LeaseGrant`). `id` 0 lets the store pick the next free id
    /// deterministically. Returns the lease's id.
    @discardableResult
    public mutating func grantLease(id: LeaseID, ttl: Int64, now: Int64) throws(StoreError) -> LeaseID {
        if ttl <= 0 || ttl > maxLeaseTTL { throw .invalidTTL(ttl) }
        var id = id
        if id == 0 {
            id = nextLeaseID
            while leases[id] != nil { id += 1 }
        } else if leases[id] != nil {
            throw .leaseExists(id)
        }
        leases[id] = Lease(id: id, ttl: ttl, expiry: Self.expiry(now: now, ttl: ttl), keys: [])
        dataBytes += Self.leaseOverhead
        if id >= nextLeaseID && id < Int64.max { nextLeaseID = id + 1 }
        return id
    }

    /// Removes a lease and deletes its keys, all at one new revision (none when it had no keys), as
    /// etcd's `LeaseRevoke`. Returns the store's revision afterwards.
    @discardableResult
    public mutating func revokeLease(_ id: LeaseID) throws(StoreError) -> Int64 {
        guard let lease = leases[id] else { throw .leaseNotFound(id) }
        let main = revision + 1
        // Sorted so every replica logs the deletions in the same order.
        let keys = lease.keys.sorted { $0.lexicographicallyPrecedes($1) }
        for key in keys {
            if let kv = get(key) { delete(kv, at: main) }
        }
        leases[id] = nil
        dataBytes -= Self.leaseOverhead
        if !keys.isEmpty { revision = main }
        return revision
    }

    /// Renews a lease for its full TTL from `now` (etcd's `LeaseKeepAlive`); returns that TTL.
    /// A lease already expired at `now` cannot be revived: its revoke is on the way, and etcd answers
    /// a keep-alive for it with "lease not found" too.
    @discardableResult
    public mutating func keepAlive(_ id: LeaseID, now: Int64) throws(StoreError) -> Int64 {
        guard let lease = leases[id], lease.expiry > now else { throw .leaseNotFound(id) }
        leases[id]!.expiry = Self.expiry(now: now, ttl: lease.ttl)
        return lease.ttl
    }

    /// Gives every lease at least its full TTL from `now` (etcd's lessor `Promote`). A new leader
    /// proposes this first: expiries were stamped with the old leader's clock, and clients need a
    /// full TTL to find the new leader before their leases may expire.
    public mutating func renewAllLeases(now: Int64) {
        for id in leases.keys {
            let renewed = Self.expiry(now: now, ttl: leases[id]!.ttl)
            if renewed > leases[id]!.expiry { leases[id]!.expiry = renewed }
        }
    }

    /// What is left of a lease at `now` (etcd's `LeaseTimeToLive`, with keys).
    public func timeToLive(_ id: LeaseID, now: Int64) throws(StoreError) -> LeaseStatus {
        guard let lease = leases[id] else { throw .leaseNotFound(id) }
        // Whole seconds, truncated like etcd's int64(Remaining().Seconds()), and 0 once expired.
        let remaining = lease.expiry > now ? (lease.expiry - now) / 1000 : 0
        return LeaseStatus(id: id, ttl: remaining, grantedTTL: lease.ttl,
                           keys: lease.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// The leases whose expiry is at or before `now`, by id. The store does not act on this: the
    /// leader proposes a revoke for each, so that expiry is replicated like any other write.
    public func expiredLeases(now: Int64) -> [LeaseID] {
        leases.values.filter { $0.expiry <= now }.map(\.id).sorted()
    }

    /// The ids of all live leases, ascending (etcd's `LeaseLeases`).
    public var leaseIDs: [LeaseID] { leases.keys.sorted() }

    /// `now + ttl` seconds, saturating rather than trapping on absurd clocks.
    static func expiry(now: Int64, ttl: Int64) -> Int64 {
        let (ms, o1) = ttl.multipliedReportingOverflow(by: 1000)
        if o1 { return .max }
        let (sum, o2) = now.addingReportingOverflow(ms)
        return o2 ? (ms > 0 ? .max : .min) : sum
    }
}
