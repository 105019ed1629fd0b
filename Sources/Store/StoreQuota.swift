/// The storage quota and its alarm, after etcd's `--quota-backend-bytes` and `NOSPACE`.
///
/// The store counts the bytes it retains (`KeyValueStore.dataBytes`: every retained version of
/// every key, with a fixed overhead per version), deterministically, so every replica agrees. A
/// member refuses a write that would grow the store past its quota before proposing it, and
/// raises the `NOSPACE` alarm through the log. While the alarm is raised, the state machine
/// itself refuses every write that grows the store (on every replica alike, since the alarm is
/// replicated state): new keys, larger values, new leases. Reads, deletes, compaction and puts
/// that replace a value with one no larger (a heartbeat, a same-size update) go on, so an operator
/// can make room, and the workers' heartbeats keep their leases. Once the store is below its quota
/// again (deleted records leave with the next compaction), `etcdctl alarm disarm` clears it.

/// An alarm's kind (etcd's `AlarmType`, same numbers).
public enum AlarmKind: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The store is over its quota: writes that grow it are refused.
    case noSpace = 1
    /// Kept for etcd's numbering; never raised here.
    case corrupt = 2

    /// etcd's name, as `etcdctl alarm list` prints it.
    public var description: String {
        switch self {
        case .noSpace: "NOSPACE"
        case .corrupt: "CORRUPT"
        }
    }
}

/// An alarm raised by a member (etcd's `AlarmMember`).
public struct StoreAlarm: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The member that raised it.
    public var memberID: UInt64
    public var kind: AlarmKind

    public init(memberID: UInt64, kind: AlarmKind) {
        self.memberID = memberID
        self.kind = kind
    }

    public static func < (a: StoreAlarm, b: StoreAlarm) -> Bool {
        (a.memberID, a.kind.rawValue) < (b.memberID, b.kind.rawValue)
    }

    /// etcd's form: `memberID:<hex> alarm:NOSPACE`.
    public var description: String { "memberID:\(String(memberID, radix: 16)) alarm:\(kind)" }
}

/// Raise or clear an alarm (etcd's `AlarmRequest.AlarmAction`, same numbers).
public enum AlarmAction: UInt8, Sendable, Hashable {
    case activate = 1
    case deactivate = 2
}

/// A store that keeps a quota and alarms (the built-in store).
public protocol QuotaStore: Sendable {
    /// The alarms raised, sorted (a local read: alarms change only through the log).
    func alarms() -> [StoreAlarm]
    /// Raises or clears `alarm` through the log; the alarms changed (none when nothing changed).
    func changeAlarm(_ action: AlarmAction, _ alarm: StoreAlarm) async throws -> [StoreAlarm]
    /// What the store retains and what it may, for `/metrics` and `/readyz`.
    func usage() -> StoreUsage
}

/// The store's size against its quota.
public struct StoreUsage: Sendable, Hashable {
    /// `KeyValueStore.dataBytes` of this replica.
    public var dataBytes: Int64
    /// The quota; 0 for none.
    public var quotaBytes: Int64
    public var alarms: [StoreAlarm]

    public init(dataBytes: Int64, quotaBytes: Int64, alarms: [StoreAlarm]) {
        self.dataBytes = dataBytes
        self.quotaBytes = quotaBytes
        self.alarms = alarms
    }
}

extension KeyValueStore {
    /// Bytes a retained version costs beyond its key and value: revisions, version, lease and the
    /// bookkeeping around them. A tombstone costs its key and this.
    static let recordOverhead: Int64 = 48
    /// What a new lease costs.
    static let leaseOverhead: Int64 = 64

    /// What a version of `key` holding `kv` adds to `dataBytes`.
    static func cost(key: [UInt8], _ kv: KeyValue?) -> Int64 {
        Int64(key.count + (kv?.value.count ?? 0)) + recordOverhead
    }

    /// Whether the NOSPACE alarm is raised.
    public var isOverQuota: Bool { alarms.contains { $0.kind == .noSpace } }

    /// How many bytes `command` would add beyond what a compaction reclaims: a put of a new key
    /// its whole cost, a put over an existing key what its value grows by, a lease grant its
    /// overhead; deletes and compaction nothing. Conservative for a txn: the puts of both
    /// branches count.
    public func growth(of command: Command) -> Int64 {
        func put(_ request: PutRequest) -> Int64 {
            guard let current = get(request.key) else { return Self.cost(key: request.key, KeyValue(key: [], createRevision: 0, modRevision: 0, version: 0, value: request.value, lease: 0)) }
            return max(0, Int64(request.value.count - current.value.count))
        }
        switch command {
        case .identified(_, let inner): return growth(of: inner)
        case .put(let request): return put(request)
        case .txn(let request):
            return (request.success + request.failure).reduce(0) { total, op in
                if case .put(let p) = op { total + put(p) } else { total }
            }
        case .leaseGrant: return Self.leaseOverhead
        case .deleteRange, .compact, .leaseRevoke, .leaseKeepAlive, .leaseRenewAll, .alarm: return 0
        }
    }

    /// Applies an alarm change: the alarms it changed.
    mutating func changeAlarm(_ action: AlarmAction, _ alarm: StoreAlarm) -> [StoreAlarm] {
        switch action {
        case .activate: alarms.insert(alarm).inserted ? [alarm] : []
        case .deactivate: alarms.remove(alarm).map { [$0] } ?? []
        }
    }

    /// `dataBytes` counted from scratch (after a snapshot is loaded; and by tests, to check the
    /// running count).
    func countDataBytes() -> Int64 {
        history.reduce(0) { total, entry in
            entry.value.reduce(total) { $0 + Self.cost(key: entry.key, $1.kv) }
        } + Int64(leases.count) * Self.leaseOverhead
    }
}

extension RaftStore: QuotaStore {
    /// Refuses `command` before it is proposed when it would grow the store past the quota, and
    /// raises this member's NOSPACE alarm through the log first (as etcd's quota check does), so
    /// every replica refuses what grows the store from then on. With the alarm raised already, the
    /// state machine refuses it anyway: failing here saves the round.
    func checkQuota(_ command: Command) async throws {
        let (growth, used, alarmed) = machine.read { ($0.growth(of: command), $0.dataBytes, $0.isOverQuota) }
        guard growth > 0 else { return }
        if alarmed { throw StoreError.noSpace }
        guard options.quotaBytes > 0, used + growth > options.quotaBytes else { return }
        _ = try? await execute(.alarm(.activate, StoreAlarm(memberID: options.memberID, kind: .noSpace)))
        throw StoreError.noSpace
    }

    public func alarms() -> [StoreAlarm] {
        machine.read { $0.alarms.sorted() }
    }

    public func changeAlarm(_ action: AlarmAction, _ alarm: StoreAlarm) async throws -> [StoreAlarm] {
        try await execute(.alarm(action, alarm)).alarmResponse()
    }

    public func usage() -> StoreUsage {
        machine.read { StoreUsage(dataBytes: $0.dataBytes, quotaBytes: options.quotaBytes, alarms: $0.alarms.sorted()) }
    }
}
