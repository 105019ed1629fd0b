/// Optional abilities of a `ClusterStore` beyond the protocol, which the etcd-compatible API uses
/// when the store has them (`RaftStore` and `MemoryStore` do; `EtcdStore` gets progress
/// notifications from etcd itself and has no lease listing).

/// A store whose watches can be asked to report progress, as etcd's `RequestProgress`.
public protocol WatchProgressNotifying: Sendable {
    /// Every open watch of this store yields a progress notification (a `WatchResponse` with no
    /// events) at the revision up to which it has delivered every change.
    func notifyWatchProgress()
}

/// A store that can list its live leases (etcd's `LeaseLeases`).
public protocol LeaseListing: Sendable {
    /// The ids of every live lease, ascending, read linearizably.
    func leaseIDs() async throws -> [LeaseID]
}

/// A store that knows when it applies a revision, so waiting for one needs no polling.
public protocol RevisionWaiting: Sendable {
    /// Returns once this store (this replica, for a replicated one) has applied `revision`, so a
    /// serializable read sees it. Honours cancellation: callers bound the wait.
    func waitForRevision(_ revision: Int64) async throws
}

extension MemoryStore: RevisionWaiting {
    public func waitForRevision(_ revision: Int64) async throws {
        try await watchHub.waitForRevision(revision)
    }
}

extension RaftStore: RevisionWaiting {
    public func waitForRevision(_ revision: Int64) async throws {
        try await hub.waitForRevision(revision)
    }
}

extension RaftStore: WatchProgressNotifying, LeaseListing {
    public func notifyWatchProgress() {
        hub.notifyProgress()
    }

    public func leaseIDs() async throws -> [LeaseID] {
        try await waitLinearizable()
        return machine.read { $0.leaseIDs }
    }
}

/// A store that holds its state in this process, so the revision it has applied is read from
/// memory without a request (the REST API's `X-Orchestrator-Index` header on every response).
public protocol LocalRevisionReading: Sendable {
    /// The revision this store (this replica, for a replicated one) has applied.
    var appliedRevision: Int64 { get }
}

extension RaftStore: LocalRevisionReading {
    public var appliedRevision: Int64 { machine.read { $0.revision } }
}

extension MemoryStore: LocalRevisionReading {
    public var appliedRevision: Int64 { store.revision }
}
