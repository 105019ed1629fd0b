import EtcdAPI
import Raft
import Store

/// What the etcd v3 API of a master reports about the cluster: members from the configuration
/// with the client addresses the masters registered (`MasterDirectory`), Raft state and database
/// size from this master's replica.
struct MasterEtcdInfo: EtcdClusterInfo {
    let server: MasterServer
    let raft: RaftClusterInfo
    let names: [NodeID: String]

    init(server: MasterServer, store: RaftStore, names: [NodeID: String]) {
        self.server = server
        self.names = names
        let members = names.keys.sorted().map { id in
            EtcdMember(id: id, name: names[id]!, peerURLs: [], clientURLs: [])
        }
        raft = RaftClusterInfo(store: store, memberID: names.first { $0.value == server.config.id }?.key ?? 0, members: members,
                               databasePath: server.config.dataDir + "/raft.sqlite")
    }

    var clusterID: UInt64 { raft.clusterID }
    var memberID: UInt64 { raft.memberID }

    func members() async throws -> [EtcdMember] {
        let directory = server.masterDirectory.entries()
        let peers = Dictionary(uniqueKeysWithValues: server.config.peers.map { ($0.name, $0.address) })
        return try await raft.members().map { member in
            var m = member
            if let rpc = peers[m.name] { m.peerURLs = ["http://\(rpc)"] }
            if let etcd = directory[m.name]?.etcd, !etcd.isEmpty { m.clientURLs = ["http://\(etcd)"] }
            return m
        }
    }

    func status() async throws -> EtcdMemberStatus { try await raft.status() }
}
