/// Exactly-once writes: every write a replica proposes for a client carries a `RequestID`, drawn
/// once when the request arrives, and every retry of that request (through an election, to another
/// leader, after a forwarding call broke mid-flight) carries the same one. The state machine
/// remembers the response of each recently applied request and answers a duplicate with it instead
/// of applying it again (etcd's request ids serve its proposers the same way).

/// A write request's identity: 128 random bits drawn by the replica that took the client's request.
public struct RequestID: Sendable, Hashable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh id from `generator` (the shell passes the system's; tests a seeded one).
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> RequestID {
        RequestID(high: generator.next(), low: generator.next())
    }

    public var description: String {
        let hex = String(high, radix: 16) + "-" + String(low, radix: 16)
        return hex
    }
}

/// The responses of the most recently applied identified requests, oldest first, bounded by count
/// and by bytes so the state (and every snapshot) stays bounded however long the cluster runs.
///
/// Eviction depends only on the sequence of applied commands, so every replica evicts the same
/// entries and snapshots stay byte-for-byte equal. The bounds cover the retry window by far: a
/// retry comes within a write's 5 s timeout, and 100,000 entries is more than 5 s of writes at the
/// rates this store reaches (BENCHMARKS.md); an id evicted before its retry arrives is applied again,
/// as every write was before request ids.
public struct AppliedRequests: Sendable, Equatable {
    /// At most this many remembered requests.
    public static let maxEntries = 100_000
    /// At most this many bytes of remembered responses; a single larger response is not remembered.
    public static let maxBytes = 32 << 20

    /// Encoded responses by request.
    private(set) var responses: [RequestID: [UInt8]] = [:]
    /// The remembered ids in apply order; `order[head...]` are live.
    private(set) var order: [RequestID] = []
    private var head = 0
    /// The bytes of `responses`.
    private(set) var bytes = 0

    public init() {}

    /// How many requests are remembered.
    public var count: Int { responses.count }

    /// The remembered response of `id`, if it was applied recently.
    public func response(for id: RequestID) -> [UInt8]? { responses[id] }

    /// Remembers `response` for `id`, evicting the oldest entries past the bounds.
    public mutating func record(_ id: RequestID, response: [UInt8]) {
        guard response.count <= Self.maxBytes, responses[id] == nil else { return }
        responses[id] = response
        order.append(id)
        bytes += response.count
        while responses.count > Self.maxEntries || bytes > Self.maxBytes {
            let oldest = order[head]
            head += 1
            if let evicted = responses.removeValue(forKey: oldest) { bytes -= evicted.count }
        }
        // Drop the evicted prefix now and then, so `order` does not grow without bound.
        if head > 4_096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    /// Gives this copy storage of its own now (see `KeyValueStore.detachStorage()`).
    mutating func detachStorage() {
        responses.reserveCapacity(responses.count)
        order.reserveCapacity(order.count)
    }

    /// The live entries, oldest first (for snapshots).
    var entries: [(id: RequestID, response: [UInt8])] {
        order[head...].compactMap { id in responses[id].map { (id, $0) } }
    }

    public static func == (a: AppliedRequests, b: AppliedRequests) -> Bool {
        a.responses == b.responses && Array(a.order[a.head...]) == Array(b.order[b.head...])
    }
}
