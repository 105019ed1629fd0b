import Foundation
import Store

extension MasterServer {
    /// A backup of the built-in store, as of a linearizable point at the call (every write
    /// acknowledged before it is in the image). The image is copied in O(1) and encoded off the
    /// Raft loop; the caller streams `encoded`.
    ///
    /// - Throws: `BackupUnavailable` with `--store etcd` (back up that etcd itself), or the
    ///   store's error when no leader confirms the read.
    public func backup() async throws -> ClusterBackup {
        guard case .raft(let raft) = parts else { throw BackupUnavailable() }
        let (store, index) = try await raft.store.consistentImage()
        return ClusterBackup(revision: store.revision, raftIndex: index, createdMs: now(),
                             clusterID: raft.registry.clusterID, image: store.snapshotBytes())
    }
}

/// A master whose state lives in an external etcd has no store of its own to back up.
public struct BackupUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String {
        "this master keeps its state in an external etcd (--store etcd): back up that etcd with `etcdctl snapshot save` against its own endpoints"
    }
}
