/// The commands replicated through Raft and the responses their application produces.

/// One write to the key-value state machine, as proposed to Raft (reads are served locally, or
/// linearizably through ReadIndex, and need no log entry).
public enum Command: Sendable, Hashable {
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
    case compact(revision: Int64)
    /// `now` is the proposing leader's clock in milliseconds, so every replica computes the same expiry.
    case leaseGrant(id: LeaseID, ttl: Int64, now: Int64)
    /// Also how the leader replicates an expiry it found with `expiredLeases(now:)`.
    case leaseRevoke(id: LeaseID)
    case leaseKeepAlive(id: LeaseID, now: Int64)
    /// Proposed by a new leader before it revokes anything: every lease gets a full TTL from `now`.
    case leaseRenewAll(now: Int64)
    /// Raises or clears an alarm (etcd's `Alarm` with ACTIVATE or DEACTIVATE).
    case alarm(AlarmAction, StoreAlarm)
    /// A client's write with its request id: applied once, however often it is proposed (a
    /// duplicate gets the first application's response). Never nested.
    indirect case identified(RequestID, Command)

    /// The command without its request id.
    public var unidentified: Command {
        if case .identified(_, let inner) = self { return inner }
        return self
    }
}

/// The result of applying a `Command`, with etcd's response fields.
public enum Response: Sendable, Hashable {
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
    /// `revision` is the header revision (compaction does not change it).
    case compact(revision: Int64)
    case leaseGrant(revision: Int64, id: LeaseID, ttl: Int64)
    case leaseRevoke(revision: Int64)
    case leaseKeepAlive(revision: Int64, id: LeaseID, ttl: Int64)
    case leaseRenewAll(revision: Int64)
    /// The alarms the command changed.
    case alarm(revision: Int64, changed: [StoreAlarm])
    /// The command was rejected; the store did not change.
    case failure(StoreError)
}

/// What applying one command did: the answer for its proposer and the changes for live watchers.
public struct Applied: Sendable, Hashable {
    public var response: Response
    /// The events the command produced, in order (with prevKV; strip it for watchers that did not ask).
    public var events: [WatchEvent]
}

extension KeyValueStore {
    /// Applies one command. Never throws: a rejected command yields `.failure` and changes nothing, so
    /// every replica stays in step whatever the proposer sent.
    public mutating func apply(_ command: Command) -> Applied {
        if case .identified(let id, let inner) = command {
            if let first = appliedRequests.response(for: id) {
                // Already applied: answer as the first time, change nothing.
                let response = (try? Response(decoding: first)) ?? .failure(.malformed("undecodable remembered response"))
                return Applied(response: response, events: [])
            }
            let applied = apply(inner)
            // A rejected command changed nothing: running its duplicate again cannot apply it
            // twice, so only writes that took effect are remembered (and a bad request leaves
            // the store exactly as it was).
            if case .failure = applied.response { return applied }
            appliedRequests.record(id, response: applied.response.encoded())
            return applied
        }
        // The NOSPACE alarm caps the store: what would grow it is refused, the rest goes on.
        if isOverQuota, growth(of: command) > 0 { return Applied(response: .failure(.noSpace), events: []) }
        let logged = log.count
        let response: Response
        do throws(StoreError) {
            switch command {
            case .put(let r): response = .put(try put(r))
            case .deleteRange(let r): response = .deleteRange(try deleteRange(r))
            case .txn(let r): response = .txn(try txn(r))
            case .compact(let rev):
                try compact(rev)
                response = .compact(revision: revision)
            case .leaseGrant(let id, let ttl, let now):
                let granted = try grantLease(id: id, ttl: ttl, now: now)
                response = .leaseGrant(revision: revision, id: granted, ttl: ttl)
            case .leaseRevoke(let id): response = .leaseRevoke(revision: try revokeLease(id))
            case .leaseKeepAlive(let id, let now):
                let ttl = try keepAlive(id, now: now)
                response = .leaseKeepAlive(revision: revision, id: id, ttl: ttl)
            case .leaseRenewAll(let now):
                renewAllLeases(now: now)
                response = .leaseRenewAll(revision: revision)
            case .alarm(let action, let alarm):
                response = .alarm(revision: revision, changed: changeAlarm(action, alarm))
            case .identified:
                throw StoreError.malformed("a request id inside a request id")
            }
        } catch {
            return Applied(response: .failure(error), events: [])
        }
        // A compaction only removes old events; everything else appends its own at the end.
        switch command {
        case .compact, .alarm: return Applied(response: response, events: [])
        default: return Applied(response: response, events: Array(log[logged...]))
        }
    }
}
