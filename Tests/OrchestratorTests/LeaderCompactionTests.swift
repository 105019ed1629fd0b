import ClusterModel
import EtcdBackend
import EtcdTestSupport
import Foundation
import Logging
import Store
import Synchronization
import Testing
@testable import Orchestrator
import TestGate

/// Who compacts what: the leader compacts the built-in store as it always has, and an external
/// etcd only with `--etcd-compaction-retention` (issue 16).
@Suite struct LeaderCompactionTests {
    static func config(_ store: MasterConfig.StoreKind, prefix: String = "", retention: Int64 = 0) -> MasterConfig {
        var config = MasterConfig(id: "m1", dataDir: "/tmp/unused", apiAddress: HostPort(host: "127.0.0.1", port: 8080),
                                  rpcAddress: HostPort(host: "127.0.0.1", port: 9090),
                                  peers: [("m1", HostPort(host: "127.0.0.1", port: 9090))], store: store,
                                  etcdEndpoints: store == .etcd ? ["http://127.0.0.1:1"] : [])
        config.etcdPrefix = prefix
        config.etcdCompactionRetention = retention
        return config
    }

    @Test("the built-in store keeps its leader compaction; etcd is compacted only with the flag")
    func retentionByStore() {
        #expect(Self.config(.raft).leaderCompactionRetention == 20_000)
        #expect(Self.config(.etcd).leaderCompactionRetention == nil)
        #expect(Self.config(.etcd, retention: 5_000).leaderCompactionRetention == 5_000)
    }

    @Test("--etcd-prefix and --etcd-compaction-retention are checked, with messages naming the flag")
    func validation() throws {
        func message(_ config: MasterConfig) -> String? {
            do {
                try config.validate()
                return nil
            } catch {
                return error.description
            }
        }
        #expect(message(Self.config(.etcd, prefix: "/team-a", retention: 100)) == nil)
        #expect(message(Self.config(.raft, prefix: "/team-a"))?.contains("--etcd-prefix applies only with --store etcd") == true)
        #expect(message(Self.config(.raft, retention: 100))?.contains("--etcd-compaction-retention applies only with --store etcd") == true)
        #expect(message(Self.config(.etcd, retention: -1))?.contains("--etcd-compaction-retention must be 0") == true)
        #expect(message(Self.config(.etcd, prefix: "team-a"))?.contains("--etcd-prefix \"team-a\": must start with '/'") == true)
    }

    @Test("an etcd-backed master's leader loop is built without compaction unless the flag is given")
    func masterWiring() async throws {
        for (retention, expected) in [(Int64(0), Int64?.none), (1_000, 1_000)] {
            let server = try MasterServer(config: Self.config(.etcd, retention: retention), logger: Logger(label: "test"))
            #expect(server.leaderLoop.options.compactionRetention == expected)
            if case .etcd(let store, _, _) = server.parts { try await store.shutdown() }
        }
    }

    /// A leader loop over `store` that checks for compaction every 10 ms.
    static func loop(_ store: MemoryStore, retention: Int64?) -> LeaderLoop {
        var options = LeaderLoop.Options()
        options.compactionRetention = retention
        options.compactionInterval = .milliseconds(10)
        options.taskRetention = nil
        options.nodePurge = nil
        options.jitterSeed = 1
        return LeaderLoop(repository: ClusterRepository(store: store), leadership: TaskRetentionTests.AlwaysLeader(), masterID: "m1",
                          defaultAlgorithm: .binPacking, options: options, now: { 0 }, logger: Logger(label: "test"))
    }

    static func writeHistory(_ store: MemoryStore, puts: Int) async throws {
        for i in 0..<puts { try await store.put(Array("/other/k\(i % 3)".utf8), Array("\(i)".utf8)) }
    }

    @Test("without a retention the leader never compacts: old revisions stay readable through many checks")
    func offNeverCompacts() async throws {
        let store = MemoryStore()
        try await Self.writeHistory(store, puts: 50)
        let loop = Self.loop(store, retention: nil)
        let running = Task { await loop.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(20)
        while loop.compactionChecks.load(ordering: .relaxed) < 5 {
            guard ContinuousClock.now < deadline else { Issue.record("the leader loop made no compaction checks"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
        let old = try await store.range(RangeRequest(key: Array("/other/k0".utf8), revision: 2), consistency: .linearizable)
        #expect(old.kvs.first?.value == Array("0".utf8))
        #expect(loop.compactions.load(ordering: .relaxed) == 0)
    }

    @Test("with a retention the leader compacts to that many revisions behind")
    func onCompacts() async throws {
        let store = MemoryStore()
        try await Self.writeHistory(store, puts: 50)
        let loop = Self.loop(store, retention: 10)
        let running = Task { await loop.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                _ = try await store.range(RangeRequest(key: Array("/other/k0".utf8), revision: 2), consistency: .linearizable)
            } catch StoreError.compacted(let revision) {
                // The loop's own leader record is written first; the target is the revision then
                // minus 10, so at least the 50 puts' first 40 are gone.
                #expect(revision >= 40)
                break
            }
            guard ContinuousClock.now < deadline else { Issue.record("the leader did not compact"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(loop.compactions.load(ordering: .relaxed) >= 1)
    }
}

/// The same against a real etcd 3.4: the leader loop of an etcd-backed master, with the retention
/// its configuration gives, leaves etcd's history readable without the flag and compacts it with.
@Suite("Leader compaction of a real etcd", .serialized, .heavy, .timeLimit(.minutes(2)))
struct EtcdLeaderCompactionTests {
    /// Runs the leader loop an etcd-backed master with `retention` (`--etcd-compaction-retention`)
    /// would run, checking every 10 ms, against a fresh etcd holding 30 revisions of history;
    /// `check` gets the store and the loop while it runs.
    static func withLoop(retention: Int64, _ check: (EtcdStore, LeaderLoop) async throws -> Void) async throws {
        try await EtcdProcess.with { _, store in
            // Each put retried until a deadline: the store's requests time out after 5 s, and in a
            // full test run's first seconds (every suite starting at once on 2 cores) one took longer.
            let deadline = ContinuousClock.now + .seconds(60)
            for i in 0..<30 {
                while true {
                    do {
                        try await store.put(Array("/other/k\(i % 3)".utf8), Array("\(i)".utf8))
                        break
                    } catch where ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
            var options = LeaderLoop.Options()
            options.compactionRetention = LeaderCompactionTests.config(.etcd, retention: retention).leaderCompactionRetention
            options.compactionInterval = .milliseconds(10)
            options.taskRetention = nil
            options.nodePurge = nil
            let loop = LeaderLoop(repository: ClusterRepository(store: store), leadership: TaskRetentionTests.AlwaysLeader(), masterID: "m1",
                                  defaultAlgorithm: .binPacking, options: options, now: { 0 }, logger: Logger(label: "test"))
            let running = Task { await loop.run() }
            defer { running.cancel() }
            try await check(store, loop)
        }
    }

    @Test("without --etcd-compaction-retention the leader never compacts etcd: its first revisions stay readable")
    func off() async throws {
        try await Self.withLoop(retention: 0) { store, loop in
            let deadline = ContinuousClock.now + .seconds(30)
            while loop.compactionChecks.load(ordering: .relaxed) < 10 {
                guard ContinuousClock.now < deadline else { Issue.record("the leader loop made no compaction checks"); return }
                try await Task.sleep(for: .milliseconds(10))
            }
            let first = try await store.range(RangeRequest(key: Array("/other/k0".utf8), revision: 2), consistency: .linearizable)
            #expect(first.kvs.first?.value == Array("0".utf8))
            #expect(loop.compactions.load(ordering: .relaxed) == 0)
        }
    }

    @Test("with --etcd-compaction-retention 5 the leader compacts etcd to 5 revisions behind")
    func on() async throws {
        try await Self.withLoop(retention: 5) { store, loop in
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                do {
                    _ = try await store.range(RangeRequest(key: Array("/other/k0".utf8), revision: 2), consistency: .linearizable)
                } catch StoreError.compacted(let revision) {
                    // 30 puts (revisions 2...31) and the leader record, less 5.
                    #expect(revision >= 26)
                    break
                }
                guard ContinuousClock.now < deadline else { Issue.record("the leader did not compact etcd"); return }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(loop.compactions.load(ordering: .relaxed) >= 1)
        }
    }
}
