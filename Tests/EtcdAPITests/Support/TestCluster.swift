import EtcdAPI
import EtcdAPITestSupport
import Logging
import Raft
import Store

/// Starting and stopping the 3-replica cluster of a test.
enum TestCluster {
    /// Faster than a master's 100 ms ticks (elections in ~0.5 s) but slow enough that a loaded
    /// 2-core machine does not see spurious elections.
    static let tick: Duration = .milliseconds(25)

    static var logger: Logger {
        var logger = Logger(label: "etcd-api-test")
        logger.logLevel = .warning
        return logger
    }

    static func configuration(progressNotifyInterval: Duration = .seconds(1), answerPings: Bool = true) -> EtcdAPIServer.Configuration {
        var c = EtcdAPIServer.Configuration()
        c.progressNotifyInterval = progressNotifyInterval
        c.answerPingsAheadOfHTTP2 = answerPings
        return c
    }

    /// Runs `body` with a fresh cluster, stopping it afterwards whether `body` throws or not.
    static func with<T: Sendable>(
        configuration: EtcdAPIServer.Configuration = TestCluster.configuration(),
        tick: Duration = TestCluster.tick,
        storeOptions: RaftStore.Options = RaftStore.Options(),
        _ body: (LocalEtcdCluster) async throws -> T
    ) async throws -> T {
        let cluster = try await LocalEtcdCluster.start(tickInterval: tick, configuration: configuration, storeOptions: storeOptions, logger: logger)
        do {
            let result = try await body(cluster)
            await cluster.shutdown()
            return result
        } catch {
            await cluster.shutdown()
            throw error
        }
    }
}

extension LocalEtcdCluster {
    /// The endpoints of the leader and of one follower, for checking both serve everything.
    func leaderAndFollower() async throws -> (leader: String, follower: String, followerID: NodeID) {
        let leader = try await waitForLeader()
        let follower = members.first { $0.id != leader }!
        return (member(leader).endpoint, follower.endpoint, follower.id)
    }

    /// The store revision on every replica once they agree (polled with a deadline).
    func agreedRevision(timeout: Duration = .seconds(30)) async throws -> Int64 {
        let deadline = ContinuousClock.now + timeout
        while true {
            let revisions = Set(members.map { $0.store.machine.store.revision })
            if revisions.count == 1 { return revisions.first! }
            guard ContinuousClock.now < deadline else { throw LocalClusterError("replicas disagree on the revision: \(revisions)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

extension LocalEtcdCluster {
    /// Every replica's store once they are all equal (polled with a deadline): a compaction, say,
    /// changes no revision but reaches the followers a moment after the leader.
    func agreedState(timeout: Duration = .seconds(30)) async throws -> [KeyValueStore] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let states = members.map { $0.store.machine.store }
            if states.allSatisfy({ $0 == states[0] }) { return states }
            guard ContinuousClock.now < deadline else { throw LocalClusterError("replicas disagree on their state") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Runs `body` with a Swift gRPC connection to `endpoint`, closing it afterwards.
func withConnection<T: Sendable>(_ endpoint: String, _ body: (EtcdGRPCConnection) async throws -> T) async throws -> T {
    let connection = try EtcdGRPCConnection(endpoint: endpoint)
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// Bytes of a string (keys and values in tests).
func b(_ s: String) -> [UInt8] { Array(s.utf8) }
