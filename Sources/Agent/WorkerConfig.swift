import ClusterModel
import ClusterSecurity
import Foundation

/// How a worker is set up (`worker --help` documents each flag).
public struct WorkerConfig: Sendable {
    /// Any of them will do; the worker moves to the next one when one fails.
    public var masters: [HostPort]
    public var joinToken: String
    /// Keeps the node id (`node-id`), so a restarted worker is the same node.
    public var dataDir: String
    public var capacity: Resources
    public var labels: [String: String]
    /// Where this worker serves logs to the masters, and the address it tells them. Port 0 in
    /// `listenAddress` binds a free port; port 0 in `advertiseAddress` stands for the bound port.
    public var listenAddress: HostPort
    public var advertiseAddress: HostPort
    public var hostname: String
    /// How long a stopped task gets between SIGTERM and SIGKILL.
    public var stopGrace: Duration = .seconds(10)
    /// `--lease-ms`: shortens the lease the masters give (`LeaseFence`); nil: theirs. When no
    /// master has acknowledged a heartbeat for this long, every task has been stopped.
    public var lease: Duration?
    /// Reconnection backoff across masters.
    public var backoffInitial: Duration = .milliseconds(50)
    public var backoffMax: Duration = .seconds(2)
    /// The cluster's TLS material (`--tls-ca`, `--tls-cert`, `--tls-key`): mutual TLS to the
    /// masters (whose certificates must name the `--masters` hosts) and on the log port, which
    /// then serves masters only. Nil: plain text.
    public var tls: TLSMaterial?

    public init(masters: [HostPort], joinToken: String, dataDir: String, capacity: Resources, labels: [String: String] = [:],
                listenAddress: HostPort, advertiseAddress: HostPort? = nil, hostname: String = ProcessInfo.processInfo.hostName) {
        self.masters = masters
        self.joinToken = joinToken
        self.dataDir = dataDir
        self.capacity = capacity
        self.labels = labels
        self.listenAddress = listenAddress
        self.advertiseAddress = advertiseAddress ?? listenAddress
        self.hostname = hostname
    }
}

/// Why a worker stopped trying.
public enum WorkerError: Error, Sendable, CustomStringConvertible {
    /// A master refused the join token: no other master will accept it either.
    case joinRefused(String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .joinRefused(let why): "join refused: \(why)"
        case .invalidConfiguration(let why): why
        }
    }
}

/// A node's labels: the operator's (`--labels k=v,...`) and the ones the worker sets itself.
public enum NodeLabels {
    /// Labels under this prefix are the system's: a user label there could impersonate one.
    public static let systemPrefix = "orchestrator."
    /// Which runtime runs this node's tasks (`docker` or `process`): set by the worker on join, so
    /// `GET /api/v1/nodes` shows a node without container isolation for what it is.
    public static let runtime = "orchestrator.runtime"

    /// Parses `--labels k=v,...`; refuses entries without `=`, empty keys, and keys under the
    /// `orchestrator.` prefix.
    public static func parse(_ text: String) throws(WorkerError) -> [String: String] {
        var labels: [String: String] = [:]
        for item in text.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].isEmpty else { throw .invalidConfiguration("--labels: \"\(item)\" is not KEY=VALUE") }
            guard !kv[0].lowercased().hasPrefix(systemPrefix) else {
                throw .invalidConfiguration("--labels: \"\(kv[0])\" is reserved (keys starting with \(systemPrefix) are set by the worker)")
            }
            labels[String(kv[0])] = String(kv[1])
        }
        return labels
    }
}
