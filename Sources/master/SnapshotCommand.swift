import ArgumentParser
import Foundation
import Orchestrator

/// `master snapshot restore|status`: what to do with a backup taken by `etcdctl snapshot save`
/// (or `orchctl cluster snapshot save`). The work is `ClusterRestore` and `ClusterBackup`.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Inspect a backup, or found a new cluster from one.",
        subcommands: [SnapshotRestoreCommand.self, SnapshotStatusCommand.self])
}

/// `master snapshot restore FILE --id NAME --peers m1=HOST:PORT,... --data-dir DIR`.
struct SnapshotRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Write a new cluster member's data directory from a backup (as etcdutl snapshot restore).",
        discussion: """
            Run once per member of the new cluster with the same FILE and --peers, each with its own --id \
            and an empty --data-dir; then start every master with the same --id, --peers and --data-dir. \
            The new cluster holds every task, node and key of the backup, at its revision, under a new \
            cluster id; writes made after the backup are not in it. Workers that still run reconnect to \
            the masters at their addresses and report their tasks.

            Example, for a cluster of three on one host:
              master snapshot restore backup.db --id m1 --peers m1=127.0.0.1:9091,m2=127.0.0.1:9092,m3=127.0.0.1:9093 --data-dir /var/lib/orch/m1
            """)

    @Argument(help: "The backup file.") var file: String
    @Option(help: "This member's name, one of --peers.") var id: String
    @Option(help: "Every member of the new cluster: NAME=HOST:PORT,... (their --rpc-addr).") var peers: String
    @Option(help: "This member's data directory; must not hold a master's state.") var dataDir: String

    func run() throws {
        let peerList = try MasterConfig.parsePeers(peers)
        guard let bytes = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        let summary = try ClusterRestore(dataDir: dataDir, id: id, peers: peerList).restore(Array(bytes))
        print("restored revision \(summary.revision) (\(summary.keys) keys) from cluster \(summary.fromCluster) into \(dataDir):"
              + " member \(id) (id \(summary.memberID)) of new cluster \(summary.clusterID)")
    }
}

/// `master snapshot status FILE`: checks a backup and prints what it holds.
struct SnapshotStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Check a backup's hash and layout, and print its cluster, revision and size.",
        discussion: "Example: master snapshot status backup.db")

    @Argument(help: "The backup file.") var file: String

    func run() throws {
        guard let bytes = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        let backup = try ClusterBackup(decoding: Array(bytes))
        let created = Date(timeIntervalSince1970: Double(backup.createdMs) / 1000)
        print("cluster \(backup.clusterID), revision \(backup.revision), raft index \(backup.raftIndex),"
              + " taken \(created.formatted(.iso8601)), \(bytes.count) bytes, sha256 \(ClusterBackup.checksum(of: Array(bytes)))")
    }
}
