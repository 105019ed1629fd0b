/// The value types shared by the key-value state machine, its commands and its responses.
///
/// Names and numbers follow etcd's v3 API (mvccpb.KeyValue, etcdserverpb.*) so the etcd-compatible
/// API and the `EtcdStore` adapter can map them one to one.

/// A lease identifier; 0 means "no lease", as in etcd.
public typealias LeaseID = Int64

/// The largest request etcd accepts by default (`--max-request-bytes`, 1.5 MiB); a put whose key and
/// value together exceed it is rejected, so the built-in store refuses what a real etcd would refuse.
public let maxRequestBytes = 3 * 512 * 1024

/// The longest lease TTL etcd accepts (`MaxLeaseTTL`, seconds).
public let maxLeaseTTL: Int64 = 9_000_000_000

/// One key's state at one revision (etcd's `mvccpb.KeyValue`).
public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    /// The revision of the put that created this generation of the key.
    public var createRevision: Int64
    /// The revision of the last change to the key.
    public var modRevision: Int64
    /// Number of puts since the key was (re)created; a delete resets it to 0.
    public var version: Int64
    public var value: [UInt8]
    /// The lease the key is attached to, 0 for none.
    public var lease: LeaseID

    public init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: LeaseID) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// Every way a store operation can fail. An operation that throws has changed nothing.
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The key is empty (etcd: "etcdserver: key is not provided").
    case emptyKey
    /// Key plus value exceed `maxRequestBytes` (etcd: "etcdserver: request is too large").
    case requestTooLarge(size: Int, limit: Int)
    /// A range end sorts before its key.
    case invalidRange
    /// The revision asked for has been compacted away; the payload is the compacted revision.
    case compacted(Int64)
    /// The revision asked for is newer than the store's current revision.
    case futureRevision(requested: Int64, current: Int64)
    /// No lease with this id exists (etcd: "etcdserver: requested lease not found").
    case leaseNotFound(LeaseID)
    /// A lease with this id already exists.
    case leaseExists(LeaseID)
    /// The TTL is not positive or exceeds `maxLeaseTTL`.
    case invalidTTL(Int64)
    /// One branch of a txn writes the same key twice (etcd: "duplicate key given in txn request").
    case duplicateKey
    /// Encoded bytes (command, response or snapshot) are not valid; the text says where.
    case malformed(String)
    /// The store is over its quota (the NOSPACE alarm): the write would grow it (etcd: "mvcc:
    /// database space exceeded").
    case noSpace

    public var description: String {
        switch self {
        case .emptyKey: "key is not provided"
        case .requestTooLarge(let size, let limit): "request is too large (\(size) bytes, limit \(limit))"
        case .invalidRange: "range end sorts before the key"
        case .compacted(let rev): "required revision has been compacted (compacted revision \(rev))"
        case .futureRevision(let requested, let current): "required revision \(requested) is a future revision (current \(current))"
        case .leaseNotFound(let id): "requested lease \(id) not found"
        case .leaseExists(let id): "lease \(id) already exists"
        case .invalidTTL(let ttl): "invalid lease TTL \(ttl)"
        case .duplicateKey: "duplicate key given in txn request"
        case .malformed(let why): "malformed encoding: \(why)"
        case .noSpace: "mvcc: database space exceeded"
        }
    }
}

/// How `range` orders its results (etcd's `RangeRequest.SortOrder`).
public enum SortOrder: UInt8, Sendable, Hashable, CaseIterable {
    /// Unsorted in etcd's terms, which in practice (and here) means ascending by key.
    case none = 0
    case ascend = 1
    case descend = 2
}

/// What `range` sorts by (etcd's `RangeRequest.SortTarget`).
public enum SortTarget: UInt8, Sendable, Hashable, CaseIterable {
    case key = 0
    case version = 1
    case create = 2
    case mod = 3
    case value = 4
}

/// A read (etcd's `RangeRequest`).
public struct RangeRequest: Sendable, Hashable {
    public var key: [UInt8]
    /// Empty: just `key`; `[0]`: every key >= `key`; otherwise the half-open range [key, rangeEnd).
    public var rangeEnd: [UInt8]
    /// 0 reads the current revision.
    public var revision: Int64
    /// 0 means no limit.
    public var limit: Int64
    public var countOnly: Bool
    public var keysOnly: Bool
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    /// Whether the response's `count` counts every key in the range, as etcd's does (a walk over
    /// the whole range, though not over its values). A reader that pages through a large prefix
    /// and ignores the total sets it false: a limited read in key order then stops at its limit,
    /// and `count` is the number of keys returned. Not part of etcd's wire format; a command
    /// carrying a range through Raft always counts.
    public var countTotal: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], revision: Int64 = 0, limit: Int64 = 0, countOnly: Bool = false,
                keysOnly: Bool = false, sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, countTotal: Bool = true) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.revision = revision
        self.limit = limit
        self.countOnly = countOnly
        self.keysOnly = keysOnly
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.countTotal = countTotal
    }
}

/// The answer to a read (etcd's `RangeResponse`).
public struct RangeResponse: Sendable, Hashable {
    /// The store's current revision when the read was served (etcd's header revision).
    public var revision: Int64
    public var kvs: [KeyValue]
    /// True when `limit` cut the result short.
    public var more: Bool
    /// Number of keys in the range, regardless of `limit`.
    public var count: Int64

    public init(revision: Int64, kvs: [KeyValue], more: Bool, count: Int64) {
        self.revision = revision
        self.kvs = kvs
        self.more = more
        self.count = count
    }
}

/// A write of one key (etcd's `PutRequest`).
public struct PutRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var lease: LeaseID
    public var prevKV: Bool

    public init(key: [UInt8], value: [UInt8], lease: LeaseID = 0, prevKV: Bool = false) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKV = prevKV
    }
}

/// The answer to a put (etcd's `PutResponse`).
public struct PutResponse: Sendable, Hashable {
    public var revision: Int64
    /// The key's previous state, when asked for and the key existed.
    public var prevKV: KeyValue?

    public init(revision: Int64, prevKV: KeyValue?) {
        self.revision = revision
        self.prevKV = prevKV
    }
}

/// A delete of one key or a range (etcd's `DeleteRangeRequest`).
public struct DeleteRangeRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var prevKV: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
    }
}

/// The answer to a delete (etcd's `DeleteRangeResponse`).
public struct DeleteRangeResponse: Sendable, Hashable {
    public var revision: Int64
    public var deleted: Int64
    /// The deleted keys' last states, when asked for.
    public var prevKVs: [KeyValue]

    public init(revision: Int64, deleted: Int64, prevKVs: [KeyValue]) {
        self.revision = revision
        self.deleted = deleted
        self.prevKVs = prevKVs
    }
}

/// What a txn compare looks at (etcd's `Compare.CompareTarget`).
public enum CompareTarget: Sendable, Hashable {
    case version(Int64)
    case createRevision(Int64)
    case modRevision(Int64)
    case value([UInt8])
    case lease(LeaseID)
}

/// How a txn compare relates the key's field to the target (etcd's `Compare.CompareResult`).
public enum CompareResult: UInt8, Sendable, Hashable, CaseIterable {
    case equal = 0
    case greater = 1
    case less = 2
    case notEqual = 3
}

/// One condition of a txn (etcd's `Compare`): `field(key) result target` for every key in the range.
public struct Compare: Sendable, Hashable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var result: CompareResult
    public var target: CompareTarget

    public init(key: [UInt8], rangeEnd: [UInt8] = [], _ result: CompareResult, _ target: CompareTarget) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.result = result
        self.target = target
    }
}

/// One operation of a txn branch (etcd's `RequestOp`; nested txns are not supported).
public enum RequestOp: Sendable, Hashable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
}

/// The answer to one txn operation (etcd's `ResponseOp`).
public enum ResponseOp: Sendable, Hashable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
}

/// A compare-and-swap transaction (etcd's `TxnRequest`).
public struct TxnRequest: Sendable, Hashable {
    public var compares: [Compare]
    public var success: [RequestOp]
    public var failure: [RequestOp]

    public init(compares: [Compare], success: [RequestOp], failure: [RequestOp] = []) {
        self.compares = compares
        self.success = success
        self.failure = failure
    }
}

/// The answer to a txn (etcd's `TxnResponse`).
public struct TxnResponse: Sendable, Hashable {
    public var revision: Int64
    /// Whether every compare held, i.e. whether `success` (rather than `failure`) ran.
    public var succeeded: Bool
    public var responses: [ResponseOp]

    public init(revision: Int64, succeeded: Bool, responses: [ResponseOp]) {
        self.revision = revision
        self.succeeded = succeeded
        self.responses = responses
    }
}

/// A change a watcher sees (etcd's `mvccpb.Event`).
public struct WatchEvent: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case put = 0
        case delete = 1
    }

    public var kind: Kind
    /// For a put, the new state; for a delete, only `key` and `modRevision` (the deletion revision)
    /// are set, as etcd reports tombstones.
    public var kv: KeyValue
    /// The key's state before this change (nil when it did not exist or was not asked for).
    public var prevKV: KeyValue?

    public init(kind: Kind, kv: KeyValue, prevKV: KeyValue?) {
        self.kind = kind
        self.kv = kv
        self.prevKV = prevKV
    }
}

/// What `timeToLive` reports about a lease (etcd's `LeaseTimeToLiveResponse`).
public struct LeaseStatus: Sendable, Hashable {
    public var id: LeaseID
    /// Whole seconds left before expiry (0 once expired, until the leader revokes it).
    public var ttl: Int64
    /// The TTL the lease was granted with.
    public var grantedTTL: Int64
    /// The keys attached to it, sorted.
    public var keys: [[UInt8]]

    public init(id: LeaseID, ttl: Int64, grantedTTL: Int64, keys: [[UInt8]]) {
        self.id = id
        self.ttl = ttl
        self.grantedTTL = grantedTTL
        self.keys = keys
    }
}

/// Key-range helpers with etcd's conventions.
public enum KeyRange {
    /// The range end that selects every key starting with `prefix` (etcd's `GetPrefixRangeEnd`):
    /// the prefix with its last byte below 0xff incremented and what follows dropped; `[0]` (all keys
    /// from the prefix on) when every byte is 0xff or the prefix is empty.
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}
