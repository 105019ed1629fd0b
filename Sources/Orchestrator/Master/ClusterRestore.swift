import ClusterModel
import Foundation
import Raft
import Store

/// `master snapshot restore`: founds a new cluster from a backup, as `etcdutl snapshot restore`
/// does. Run it once per member of the new cluster, each time with the same file and `--peers`
/// and that member's `--id` and empty data directory; then start each master with the same
/// `--id`, `--peers` and data directory.
///
/// Each data directory gets what a founding member would have after applying its bootstrap
/// entries: `cluster.json` naming the new cluster and this member, and a Raft log holding only a
/// snapshot at index n (n = the number of members), term 1, with every member a voter, whose image
/// is the backup's store and whose member table is `--peers`. All members start from identical
/// state, so any of them may be elected.
///
/// The new cluster's id is derived from `--peers` and the backup's hash, so it differs from the
/// cluster the backup came from: a master of the old cluster that still runs is never mistaken for
/// a member of the new one.
public struct ClusterRestore: Sendable {
    public var dataDir: String
    /// This member's name, one of `peers`.
    public var id: String
    public var peers: [(name: String, address: HostPort)]

    public init(dataDir: String, id: String, peers: [(name: String, address: HostPort)]) {
        self.dataDir = dataDir
        self.id = id
        self.peers = peers
    }

    /// What a restore wrote, for the command to print.
    public struct Summary: Sendable, Equatable {
        public var clusterID: String
        public var memberID: UInt64
        public var revision: Int64
        public var keys: Int
        public var fromCluster: String
    }

    /// Writes the member's data directory from `backupBytes` (a file `ClusterBackup` decodes).
    ///
    /// - Throws: `ClusterBackupError` for a damaged file, `MasterConfigError` for a data directory
    ///   that already holds a master's state or flags that do not name this member.
    public func restore(_ backupBytes: [UInt8]) throws -> Summary {
        guard let index = peers.firstIndex(where: { $0.name == id }) else {
            throw MasterConfigError.invalid("--peers must list this member's own --id \(id)")
        }
        for name in ["cluster.json", "raft.sqlite"] where FileManager.default.fileExists(atPath: dataDir + "/" + name) {
            throw MasterConfigError.invalid("\(dataDir) already holds a master's state (\(name)): restore into an empty data directory")
        }
        let backup = try ClusterBackup(decoding: backupBytes)
        let store = try KeyValueStore(snapshot: backup.image)
        let cluster = Self.clusterID(peers: peers, checksum: ClusterBackup.checksum(of: backupBytes))
        var identity = MasterStartup.founding(MasterConfig(id: id, dataDir: dataDir, apiAddress: peers[index].address,
                                                           rpcAddress: peers[index].address, peers: peers))
        identity.cluster = cluster
        let voters = identity.known.map(\.id)
        let table = MemberTable(contexts: identity.knownContexts.mapValues(\.encoded))
        let snapshot = Snapshot(
            metadata: SnapshotMetadata(index: UInt64(voters.count), term: 1, confState: ConfState(voters: voters)),
            data: SnapshotEnvelope.wrap(members: table, image: backup.image))
        // cluster.json first, as at a bootstrap: a directory with a log always says whose it is.
        try identity.save(dataDir: dataDir)
        let storage = try SQLiteLogStorage(path: dataDir + "/raft.sqlite")
        defer { storage.close() }
        try storage.save(PersistBatch(snapshot: snapshot, hardState: HardState(term: 1, vote: noNode, commit: snapshot.metadata.index)))
        return Summary(clusterID: cluster, memberID: identity.memberID, revision: store.revision,
                       keys: Int((try? store.range(RangeRequest(key: [0], rangeEnd: [0], countOnly: true)).count) ?? 0), fromCluster: backup.clusterID)
    }

    /// FNV-1a over "restore", the backup's hash and `--peers`: the same on every member restored
    /// from the same file with the same peers, different from the founding id of those peers.
    static func clusterID(peers: [(name: String, address: HostPort)], checksum: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let text = "restore:\(checksum):" + peers.map { "\($0.name)=\($0.address)" }.joined(separator: ",")
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(format: "%016llx", hash == 0 ? 1 : hash)
    }
}
