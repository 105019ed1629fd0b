import ClusterModel
import Foundation
import Raft
import Store
import Testing
@testable import Orchestrator

/// The backup file (`ClusterBackup`) and what `master snapshot restore` writes from it.
@Suite struct ClusterBackupTests {
    /// A store with a few keys, one deleted, and its backup.
    static func sample() throws -> (KeyValueStore, ClusterBackup) {
        var store = KeyValueStore()
        for i in 0..<20 { _ = store.apply(.put(PutRequest(key: Array("/orchestrator/tasks/t\(i)".utf8), value: Array(repeating: UInt8(i), count: 100 + i)))) }
        _ = store.apply(.deleteRange(DeleteRangeRequest(key: Array("/orchestrator/tasks/t3".utf8))))
        let backup = ClusterBackup(revision: store.revision, raftIndex: 42, createdMs: 1_796_000_000_000, clusterID: "0123456789abcdef",
                                   image: store.snapshotBytes())
        return (store, backup)
    }

    @Test("a backup reads back as written, and has etcd's layout: 32 bytes (its SHA-256) past a multiple of 512")
    func roundTrip() throws {
        let (_, backup) = try Self.sample()
        let bytes = backup.encoded
        #expect(bytes.count % 512 == 32)
        #expect(try ClusterBackup(decoding: bytes) == backup)
        #expect(ClusterBackup.checksum(of: bytes).count == 64)
    }

    @Test("damage is refused with a reason: any flipped byte, a cut, another file, a header that disagrees with its image")
    func damage() throws {
        let (store, backup) = try Self.sample()
        let bytes = backup.encoded
        for at in [0, 9, 40, bytes.count / 2, bytes.count - 40, bytes.count - 1] {
            var flipped = bytes
            flipped[at] ^= 0x01
            #expect(throws: ClusterBackupError.self) { try ClusterBackup(decoding: flipped) }
        }
        var middle = bytes
        middle[bytes.count / 2] ^= 0xff
        #expect(throws: ClusterBackupError.checksumMismatch) { try ClusterBackup(decoding: middle) }
        #expect(throws: ClusterBackupError.truncated(bytes.count - 1)) { try ClusterBackup(decoding: Array(bytes.dropLast())) }
        #expect(throws: ClusterBackupError.notABackup) { try ClusterBackup(decoding: Array("SQLite format 3\0".utf8) + bytes) }
        var lying = backup
        lying.revision = store.revision + 1
        #expect(throws: ClusterBackupError.self) { try ClusterBackup(decoding: lying.encoded) }
        var garbage = backup
        garbage.image = [9, 9, 9]
        #expect(throws: ClusterBackupError.self) { try ClusterBackup(decoding: garbage.encoded) }
    }

    static let peers: [(name: String, address: HostPort)] = [
        ("m1", HostPort(host: "10.0.0.1", port: 9090)), ("m2", HostPort(host: "10.0.0.2", port: 9090)), ("m3", HostPort(host: "10.0.0.3", port: 9090)),
    ]

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("restore-\(UUID().uuidString.prefix(8))").path
    }

    @Test("a restored data directory holds what a founding member has after its bootstrap: a snapshot of the backup's store at index n, every peer a voter, a new cluster id the same on every member")
    func restore() throws {
        let (store, backup) = try Self.sample()
        let bytes = backup.encoded
        var clusters: Set<String> = []
        for (i, peer) in Self.peers.enumerated() {
            let dir = Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let summary = try ClusterRestore(dataDir: dir, id: peer.name, peers: Self.peers).restore(bytes)
            #expect(summary.memberID == UInt64(i + 1) && summary.revision == store.revision && summary.keys == 19)
            #expect(summary.fromCluster == "0123456789abcdef")
            clusters.insert(summary.clusterID)
            let identity = try #require(try ClusterIdentity.load(dataDir: dir))
            #expect(identity.cluster == summary.clusterID && identity.memberID == UInt64(i + 1) && identity.founding)
            let storage = try SQLiteLogStorage(path: dir + "/raft.sqlite")
            defer { storage.close() }
            let persisted = try storage.load()
            #expect(persisted.snapshot.metadata.index == 3 && persisted.snapshot.metadata.term == 1)
            #expect(persisted.snapshot.metadata.confState == ConfState(voters: [1, 2, 3]))
            #expect(persisted.hardState == HardState(term: 1, vote: noNode, commit: 3) && persisted.entries.isEmpty)
            let (table, image) = SnapshotEnvelope.unwrap(persisted.snapshot.data)
            #expect(image == store.snapshotBytes())
            #expect(Set(try #require(table).contexts.keys) == [1, 2, 3])
            // A second restore into the same directory is refused, and changes nothing.
            #expect(throws: MasterConfigError.self) { try ClusterRestore(dataDir: dir, id: peer.name, peers: Self.peers).restore(bytes) }
        }
        #expect(clusters.count == 1)
        #expect(clusters.first != foundingClusterID(Self.peers), "a restored cluster must not take the id its peers would found")
        #expect(clusters.first != ClusterRestore.clusterID(peers: Self.peers, checksum: "another backup"))
        let dir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: MasterConfigError.self) { try ClusterRestore(dataDir: dir, id: "m4", peers: Self.peers).restore(bytes) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/raft.sqlite"))
    }
}
