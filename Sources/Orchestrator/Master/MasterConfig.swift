import ClusterSecurity
import EtcdBackend
import Raft
/// Everything a master is told at start (`master --help` documents each flag).
public struct MasterConfig: Sendable {
    public enum StoreKind: String, Sendable, CaseIterable {
        /// The built-in Raft store (the default).
        case raft
        /// An external etcd cluster (`--etcd-endpoints`).
        case etcd
    }

    /// This master's name, one of `peers`.
    public var id: String
    public var dataDir: String
    public var apiAddress: HostPort
    /// Raft between masters and the worker protocol.
    public var rpcAddress: HostPort
    /// The etcd v3 gRPC API of the built-in store; nil: not served.
    public var etcdAddress: HostPort?
    /// Every master of the cluster, in the same order on each: the order gives the Raft ids (1...n).
    public var peers: [(name: String, address: HostPort)]
    public var store: StoreKind
    public var etcdEndpoints: [String]
    public var scheduler: SchedulingAlgorithm
    /// Workers must present it to join; nil or empty: any worker may join.
    public var joinToken: String?
    /// The cluster's TLS material (`--tls-ca`, `--tls-cert`, `--tls-key`): with it every port
    /// speaks TLS, internal ones mutual TLS; nil: plain text (`--dev`, or `--insecure`).
    public var tls: TLSMaterial?
    /// REST clients must present it; nil: the API is open.
    public var apiToken: String?
    public var health: HealthPolicy
    public var taskLimits: TaskLimits
    /// Raft timing: one tick, and the election timeout in ticks.
    public var tickInterval: Duration
    public var electionTicks: Int
    /// How often workers heartbeat (told on join): by default `health.heartbeatInterval`.
    public var heartbeatInterval: Duration
    /// How long ended tasks are kept before the leader deletes them (nil: forever).
    public var taskRetention: TaskRetention? = TaskRetention()
    /// How long a node stays down before the leader removes it (nil: never).
    public var nodePurge: NodePurge? = NodePurge()
    /// Built-in store only: revisions of history kept behind the current one (`HistoryCompactor`).
    public var historyRevisions: Int64 = 10_000
    /// Built-in store only: the storage quota (`--quota-backend-bytes`, `StoreQuota`); 0: none.
    /// etcd's default, 2 GiB.
    public var quotaBytes: Int64 = 2 << 30
    /// Built-in store only: Raft entries applied between two snapshots of the state machine
    /// (`--snapshot-threshold`). Lower compacts the log sooner, so a member that falls behind (or
    /// joins) catches up from a snapshot rather than from the entries; each snapshot encodes the
    /// whole state, so higher costs less.
    public var snapshotThreshold: UInt64 = MasterConfig.defaultSnapshotThreshold
    /// The Raft driver's own default (`RaftNode.Options.snapshotThreshold`), not a copy of it.
    public static let defaultSnapshotThreshold: UInt64 = RaftNode<ContinuousClock>.Options().snapshotThreshold
    /// `--store etcd` only: every key the masters write lives under this prefix in etcd
    /// (`--etcd-prefix`), so clusters can share one etcd. Empty (the default): no prefix, the keys
    /// are `/orchestrator/...` as they always were. Checked by `NamespacedStore.validate`.
    public var etcdPrefix: String = ""
    /// `--store etcd` only: when positive, the leader compacts the external etcd to this many
    /// revisions behind the current one (`--etcd-compaction-retention`); 0 (the default) never
    /// compacts it. Compaction discards history for every user of that etcd, so it is opt-in; the
    /// built-in store compacts its own history (`historyRevisions`) whatever this says.
    public var etcdCompactionRetention: Int64 = 0
    /// `--join HOST:PORT`: the rpc address of a running master. With an empty data directory this
    /// master asks that cluster to add it (as a learner, promoted once caught up) instead of
    /// bootstrapping one from `--peers`.
    public var join: HostPort?

    public init(id: String, dataDir: String, apiAddress: HostPort, rpcAddress: HostPort, etcdAddress: HostPort? = nil,
                peers: [(name: String, address: HostPort)], store: StoreKind = .raft, etcdEndpoints: [String] = [],
                scheduler: SchedulingAlgorithm = .binPacking, joinToken: String? = nil, apiToken: String? = nil,
                health: HealthPolicy = HealthPolicy(), taskLimits: TaskLimits = TaskLimits(),
                tickInterval: Duration = .milliseconds(100), electionTicks: Int = 10, heartbeatInterval: Duration? = nil) {
        self.id = id
        self.dataDir = dataDir
        self.apiAddress = apiAddress
        self.rpcAddress = rpcAddress
        self.etcdAddress = etcdAddress
        self.peers = peers
        self.store = store
        self.etcdEndpoints = etcdEndpoints
        self.scheduler = scheduler
        self.joinToken = joinToken
        self.apiToken = apiToken
        self.health = health
        self.taskLimits = taskLimits
        self.tickInterval = tickInterval
        self.electionTicks = electionTicks
        self.heartbeatInterval = heartbeatInterval ?? .milliseconds(health.heartbeatInterval)
    }

    /// What the leader compacts the store to, in revisions behind the current one (nil: it never
    /// compacts). The built-in store's history is the masters' own: the leader compacts it as it
    /// always has (`LeaderLoop.Options`' default; `HistoryCompactor` bounds it too). An external
    /// etcd is compacted only with `--etcd-compaction-retention`, since compaction discards
    /// history for every user of that etcd.
    public var leaderCompactionRetention: Int64? {
        switch store {
        case .raft: LeaderLoop.Options().compactionRetention
        case .etcd: etcdCompactionRetention > 0 ? etcdCompactionRetention : nil
        }
    }

    /// The lease workers are given on join (`HealthPolicy.workerLease` for `heartbeatInterval`).
    public var workerLease: Duration {
        return .milliseconds(health.workerLease(heartbeatInterval: heartbeatInterval.wholeMilliseconds))
    }

    /// Parses `m1=host:9090,m2=host:9090`; the error names the bad item.
    public static func parsePeers(_ text: String) throws(MasterConfigError) -> [(name: String, address: HostPort)] {
        var result: [(name: String, address: HostPort)] = []
        for item in text.split(separator: ",") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let address = HostPort(parsing: String(parts[1])) else {
                throw .invalid("--peers: \"\(item)\" is not NAME=HOST:PORT")
            }
            let name = String(parts[0])
            guard !result.contains(where: { $0.name == name }) else { throw .invalid("--peers: \(name) is listed twice") }
            result.append((name, address))
        }
        return result
    }

    /// Checks what can be checked before anything starts.
    public func validate() throws(MasterConfigError) {
        if store == .raft {
            if join != nil, !MasterServer.isValidName(id) {
                throw .invalid("--id \(id): 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
            }
            guard peers.contains(where: { $0.name == id }) else {
                throw .invalid("--peers must list this master's own --id \(id) (e.g. --peers \(id)=\(rpcAddress))")
            }
            // Flags that would be silently ignored are refused, so an operator does not believe
            // they took effect.
            if !etcdPrefix.isEmpty { throw .invalid("--etcd-prefix applies only with --store etcd") }
            if etcdCompactionRetention != 0 { throw .invalid("--etcd-compaction-retention applies only with --store etcd") }
        } else {
            if etcdEndpoints.isEmpty { throw .invalid("--store etcd needs --etcd-endpoints http://HOST:2379,...") }
            do {
                try NamespacedStore<EtcdStore>.validate(etcdPrefix)
            } catch {
                throw .invalid(error.description)
            }
            if etcdCompactionRetention < 0 {
                throw .invalid("--etcd-compaction-retention must be 0 (never compact etcd) or a positive number of revisions")
            }
        }
    }
}

/// A master that cannot start as configured; the message names the flag.
public enum MasterConfigError: Error, Sendable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): message
        }
    }
}

import ClusterModel
import Foundation
