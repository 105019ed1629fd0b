import EtcdProto
import GRPCCore
import Logging
import Store
import Synchronization

/// What every service of one `EtcdAPIServer` shares: the store, the member information, the
/// logger, and the few numbers that go into response headers.
final class ServerCore: Sendable {
    let store: any ClusterStore
    let info: any EtcdClusterInfo
    let logger: Logger
    let configuration: EtcdAPIServer.Configuration
    /// The Raft term as last seen (headers carry it; refreshed by `refreshTerm`, not per request,
    /// since asking the Raft node costs an actor hop).
    private let term = Atomic<UInt64>(0)
    /// Open watches that asked for periodic progress notifications, on every stream of this server.
    let progressWatches = Atomic<Int>(0)
    /// Open watches on every stream of this server (`Configuration.maxWatches`), and creates
    /// refused by a watch limit.
    let openWatches = Atomic<Int>(0)
    let refusedWatches = Atomic<Int>(0)

    init(store: any ClusterStore, info: any EtcdClusterInfo, logger: Logger, configuration: EtcdAPIServer.Configuration) {
        self.store = store
        self.info = info
        self.logger = logger
        self.configuration = configuration
    }

    /// A response header for a store state at `revision`.
    func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.clusterID = info.clusterID
        h.memberID = info.memberID
        h.revision = revision
        h.raftTerm = term.load(ordering: .relaxed)
        return h
    }

    /// This member's current revision, read locally (for headers of answers that carry no
    /// revision of their own: lease calls, compaction, cluster and maintenance calls).
    func currentRevision() async throws -> Int64 {
        try await store.range(RangeRequest(key: [0], countOnly: true), consistency: .serializable).revision
    }

    /// A header at the current revision.
    func currentHeader() async throws -> Etcdserverpb_ResponseHeader {
        header(revision: try await currentRevision())
    }

    /// Records a term seen in a fresher status.
    func noteTerm(_ value: UInt64) {
        term.store(value, ordering: .relaxed)
    }

    /// Asks the info provider for the term.
    func refreshTerm() async {
        if let status = try? await info.status() { noteTerm(status.raftTerm) }
    }

    /// Makes every watch of the store report progress, if the store can.
    func requestWatchProgress() {
        (store as? any WatchProgressNotifying)?.notifyWatchProgress()
    }

    /// Logs and refuses a method of etcd's API that this server does not implement.
    func unimplemented(_ method: String, reason: String) -> RPCError {
        logger.warning("etcd API method not implemented", metadata: ["method": "\(method)"])
        return EtcdAPIError.unimplemented(method: method, reason: reason).rpcError
    }
}
