import ClusterModel
import ClusterSecurity
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging

/// The worker: joins any master, heartbeats, follows its assignment stream and runs tasks through
/// a `TaskRuntime`. The decisions are `Supervisor`'s (pure); this actor performs them.
///
/// Tasks outlive a short loss of the masters: the worker keeps its tasks running, keeps their
/// endings as reports (on disk: `ReportStore`), and delivers them once a master answers. A loss
/// longer than the lease (`LeaseFence`) fences the worker: it stops every task before the masters
/// may start them elsewhere, and reports them as stopped when a master answers again.
public actor WorkerAgent {
    let config: WorkerConfig
    let runtime: any TaskRuntime
    let logger: Logger
    let clients: PeerClients
    nonisolated let finishedLogs: FinishedLogs
    var supervisor = Supervisor()
    public internal(set) var nodeID: String?
    /// The credential the masters issued to `nodeID` (empty before the first join), kept in
    /// `dataDir/node-credential`: every call for this node carries it.
    var nodeCredential = ""
    /// Reports not yet acknowledged by a master, oldest first. The final ones are also on disk.
    var pendingReports: [PendingReport] = []
    /// Where final reports are kept until acknowledged; nil when `dataDir/reports` cannot be
    /// created (then ended copies are removed only once their report is acknowledged).
    var reportStore: ReportStore?
    var reportSequence: UInt64 = 0
    /// Copies whose report could not be saved: kept in the runtime until a master acknowledges
    /// the report, so a crash before that still finds them (task id to epoch).
    var removeAfterAck: [String: UInt64] = [:]
    /// When the worker sent the last heartbeat (or join) a master acknowledged; the start of the
    /// process before any. Monotonic: the lease never depends on the wall clock.
    var lastAcknowledgedSend = ContinuousClock.now
    /// The lease the last joined master gave (`JoinResponse.lease_ms`); nil before any did.
    var toldLease: Duration?
    /// How long the runtime took to start each running copy, sent with its `running` report.
    var startDurations: [String: Int64] = [:]
    var reportWaiter: CheckedContinuation<Void, Never>?
    /// The last runtime operation per task: the next one waits for it, so that removing an old
    /// copy and starting its replacement (same task id) never overlap.
    var chains: [String: (token: UInt64, task: Task<Void, Never>)] = [:]
    var chainTokens: UInt64 = 0
    /// Where masters fetch logs: `config.advertiseAddress` with a port 0 replaced by the bound port.
    var advertised: HostPort

    public init(config: WorkerConfig, runtime: any TaskRuntime, logger: Logger) {
        self.config = config
        self.runtime = runtime
        self.logger = logger
        self.clients = PeerClients(security: config.tls?.grpcClientSecurity() ?? .plaintext)
        self.finishedLogs = FinishedLogs(directory: config.dataDir + "/finished-logs")
        self.advertised = config.advertiseAddress
    }

    var nodeIDPath: String { config.dataDir + "/node-id" }
    var nodeCredentialPath: String { config.dataDir + "/node-credential" }

    /// Keeps the node's credential readable by this user only, written whole or not at all, and
    /// durably: the master has recorded its digest, and a worker that lost it in a crash could not
    /// rejoin as its own node.
    func saveNodeCredential(_ credential: String) throws {
        do {
            try SecureFiles.writeFile(credential, to: nodeCredentialPath, mode: 0o600, durable: true)
        } catch {
            throw WorkerError.invalidConfiguration("cannot write \(nodeCredentialPath): \(error); check --data-dir")
        }
        nodeCredential = credential
    }

    /// The node id kept in `dataDir/node-id`, created on first use from the host name and a random
    /// suffix. Chosen by the worker rather than by a master so that the runtime can label what it
    /// starts with it before the first join, and a restarted worker finds its containers.
    public static func loadOrCreateNodeID(dataDir: String, hostname: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let path = dataDir + "/node-id"
        if let saved = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !saved.isEmpty {
            return saved
        }
        let id = NodeInfo.newID(hostname: hostname)
        try id.write(toFile: path, atomically: true, encoding: .utf8)
        return id
    }

    /// The tasks this worker runs now (task id, epoch).
    public var runningTasks: [(taskID: String, epoch: UInt64)] { supervisor.running }

    /// Runs until cancelled. Throws only for what retrying cannot fix (a refused join token).
    public func run() async throws {
        guard !config.masters.isEmpty else { throw WorkerError.invalidConfiguration("--masters is empty") }
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
        nodeID = try Self.loadOrCreateNodeID(dataDir: config.dataDir, hostname: config.hostname)
        nodeCredential = (try? String(contentsOfFile: nodeCredentialPath, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        loadPendingReports()
        try await adopt()
        lastAcknowledgedSend = .now
        defer { clients.shutdown() }
        let logServer = makeLogServer()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await logServer.run() }
            defer { group.cancelAll() }
            // Join only once the log port is bound: the masters are told where it is.
            let bound = try await logServer.transport.listeningAddress
            if advertised.port == 0, let port = bound.ipv4?.port ?? bound.ipv6?.port {
                advertised = HostPort(host: advertised.host, port: port)
            }
            logger.notice("serving task logs", metadata: ["listen": "\(config.listenAddress.host):\(bound.ipv4?.port ?? bound.ipv6?.port ?? 0)",
                                                          "advertised": "\(advertised)"])
            group.addTask { try await self.sessions() }
            group.addTask { try await self.watchLease() }
            try await group.next()
        }
    }

    /// Picks up the copies a previous run of this worker left running (found by label). A copy
    /// that ended and whose report was saved before the restart is only removed: its report is
    /// already waiting in `pendingReports`.
    func adopt() async throws {
        let found: [RuntimeTaskInfo]
        do {
            found = try await runtime.list()
        } catch {
            logger.warning("cannot list the runtime's tasks for adoption: \(error)")
            return
        }
        let saved = Set(pendingReports.map { "\($0.epoch)/\($0.taskID)" })
        for info in found {
            if !info.running, saved.contains("\(info.epoch)/\(info.taskID)") {
                perform([.remove(taskID: info.taskID)])
                continue
            }
            supervisor.adopted(taskID: info.taskID, epoch: info.epoch)
            if info.running {
                logger.notice("adopted running task", metadata: ["task": "\(info.taskID)", "epoch": "\(info.epoch)"])
                watch(taskID: info.taskID, epoch: info.epoch)
            } else {
                perform(supervisor.ended(taskID: info.taskID, epoch: info.epoch, outcome: info.outcome ?? .cancelled))
            }
        }
    }
}
