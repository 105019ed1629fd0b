import ClusterModel
import Foundation
import GRPCServing
import Hummingbird
import Logging
import NIOCore
import Raft
import ServiceLifecycle
import Store

/// The REST API of one master: the Hummingbird application in a service group of its own, so the
/// master decides when it shuts down gracefully (after leadership has moved on), not whoever
/// cancels.
final class MasterAPIServer: Sendable {
    let api: OrchestratorAPI
    private let group: ServiceGroup
    private let finished = Latch()

    init(api: OrchestratorAPI, application: some ApplicationProtocol, logger: Logger) {
        self.api = api
        self.group = ServiceGroup(configuration: .init(services: [application], logger: logger))
    }

    /// Serves until the graceful shutdown ends, or until cancelled.
    func run() async throws {
        defer { finished.fire() }
        try await withTaskCancellationHandler {
            try await group.run()
        } onCancel: {
            api.closeEventStreams()
        }
    }

    /// Ends the event streams (each gets a final `event: shutdown`), stops accepting connections,
    /// lets requests in flight finish, and waits at most `limit` for that.
    func shutDown(within limit: Duration) async {
        api.closeEventStreams()
        await group.triggerGracefulShutdown()
        _ = await finished.wait(atMost: limit)
    }
}

extension MasterServer {
    func makeAPI() throws -> MasterAPIServer {
        var configuration = APIConfiguration()
        configuration.now = now
        configuration.limits = config.taskLimits
        configuration.defaultScheduler = config.scheduler
        configuration.apiToken = config.apiToken
        configuration.tls = config.tls != nil
        // Without a token, loopback is the API's only protection, and a browser on this machine is
        // inside it: refuse other sites' pages. (A public bind without a token needs --insecure,
        // which warns: see ListenerPolicy.)
        if (config.apiToken ?? "").isEmpty, APIAuth.isLoopback(config.apiAddress.host) {
            configuration.crossSiteGuard = CrossSiteGuard(port: config.apiAddress.port, boundHost: config.apiAddress.host,
                                                          scheme: config.tls == nil ? "http" : "https")
        }
        let bridge = MasterAPIBridge(server: self)
        let api = OrchestratorAPI(repository: repository, status: bridge, logs: bridge, configuration: configuration, metrics: metrics,
                                  membership: raftParts == nil ? nil : bridge, cache: cache)
        let app = try api.makeApplication(address: .hostname(config.apiAddress.host, port: config.apiAddress.port),
                                          tls: config.tls?.httpsServerConfiguration(), logger: logger)
        return MasterAPIServer(api: api, application: app, logger: logger)
    }

    /// A graceful stop (SIGTERM): `/readyz` turns 503 at once; a leader hands leadership to its
    /// most caught-up follower (Raft thesis §3.10) or resigns its etcd election key, so the
    /// cluster has a new leader within milliseconds rather than after an election timeout; then
    /// the REST API ends its event streams, refuses new connections and lets requests in flight
    /// finish. Each step is bounded, so a stop takes well under Docker's 10 s grace period.
    func stopGracefully(api: MasterAPIServer) async {
        stopping.fire()
        logger.notice("stopping gracefully")
        switch parts {
        case .raft(let raft):
            let registry = raft.registry
            let status = await raft.store.status()
            if status.role == .leader,
               let target = Self.transferTarget(leader: status.id, voters: status.confState.voters, match: status.match) {
                do {
                    try await withDeadline(.seconds(2)) { try await raft.node.transferLeadership(to: target) }
                    logger.notice("handed leadership over", metadata: ["to": "\(registry.name(of: target) ?? "\(target)")"])
                } catch {
                    logger.warning("leadership hand-off to \(registry.name(of: target) ?? "\(target)") failed: \(error); the others will elect a leader")
                }
            }
        case .etcd(_, let election, _):
            await election.resign()
        }
        await api.shutDown(within: .seconds(2))
    }

    /// The voter, other than this leader, whose log matches the most: it can win the election
    /// that `TimeoutNow` starts without first catching up.
    static func transferTarget(leader: NodeID, voters: [NodeID], match: [NodeID: UInt64]) -> NodeID? {
        // Ties go to the lowest id, so the choice does not depend on the order of `voters`.
        voters.filter { $0 != leader }.max { (match[$0] ?? 0, $1) < (match[$1] ?? 0, $0) }
    }

    /// Ready when a leader is known and this master has applied every write committed before the
    /// check (a ReadIndex round, thesis §6.4) within `bound`; a lagging or cut-off follower is not.
    public func readiness(bound: Duration = .seconds(2)) async -> (ready: Bool, reason: String) {
        if stopping.isFired { return (false, "this master is stopping") }
        switch parts {
        case .raft(let raft):
            let status = await raft.store.status()
            guard status.leader != noNode else { return (false, "no leader is known") }
            do {
                try await withDeadline(bound) { try await raft.node.linearizableRead() }
                return (true, "")
            } catch {
                let now = await raft.store.status()
                return (false, "this master has not caught up with the leader's commit index within \(bound)"
                    + " (applied \(now.appliedIndex), commit \(now.commitIndex)): \(error)")
            }
        case .etcd(let store, _, _):
            do {
                _ = try await withDeadline(bound) { try await store.range(RangeRequest(key: Array("health".utf8)), consistency: .linearizable) }
            } catch {
                return (false, "etcd did not answer a linearizable read within \(bound): \(error)")
            }
            return (try? await repository.leader()) != nil ? (true, "") : (false, "no leader is known")
        }
    }

    /// Runs a part that listens on `address`; when it cannot bind, the error names the flag.
    static func naming(_ flag: String, _ address: HostPort, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            guard Self.isAddressInUse(error) else { throw error }
            let hint = flag == "--etcd-addr" ? " (or --etcd-addr off to not serve the etcd API)" : ""
            throw MasterConfigError.invalid(
                "\(flag) \(address): Address already in use: another process listens there; choose another port with \(flag)\(hint)")
        }
    }

    /// EADDRINUSE, however deep a library wrapped it.
    static func isAddressInUse(_ error: any Error) -> Bool {
        if let io = error as? IOError, io.errnoCode == EADDRINUSE { return true }
        let text = String(reflecting: error)
        return text.contains("Address already in use") || text.contains("EADDRINUSE") || text.contains("errno: 98")
    }
}
