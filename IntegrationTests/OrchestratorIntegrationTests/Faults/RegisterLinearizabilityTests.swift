import EtcdAPITestSupport
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Linearizability
import Raft
import Synchronization
import Testing
import TestGate

/// Issue 15's register workload, short profile: clients put, read (linearizable) and
/// compare-and-set a few keys through every master's etcd API while the leader is killed with
/// SIGKILL and restarted; the history, with every call that failed recorded as "may or may not
/// have happened", must be linearizable (our own Wing & Gong checker, split per key).
@Suite(.serialized, .heavy) struct RegisterLinearizabilityTests {
    @Test("put, get and compare-and-set through all three masters stay linearizable while the leader is killed and restarted")
    func leaderKill() async throws {
        let seed = ProcessInfo.processInfo.environment["ORCH_FAULT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        let cluster = try ClusterHarness(masters: 3)
        defer { cluster.killAll() }
        try cluster.start()
        let leader = try await cluster.leaderIndex()
        let workload = try RegisterWorkload(cluster: cluster, seed: seed)
        defer { Task { await workload.close() } }

        let run = Task { try await workload.run(clients: 6, keys: 3, for: .seconds(7)) }
        try await Task.sleep(for: .seconds(2))  // a schedule of faults, not a wait for a condition
        workload.markDown(leader)
        cluster.masters[leader].kill9()
        try await Task.sleep(for: .seconds(2))
        try cluster.masters[leader].start()
        try await cluster.waitUntil("the old leader serving again") {
            try await cluster.request(.GET, master: leader, "/readyz").status == 200
        }
        workload.markUp(leader)
        let history = try await run.value

        let report = KeyValueLinearizabilityChecker().check(history)
        let completed = history.filter { !$0.timedOut }.count
        #expect(completed >= 200, "too few operations completed to mean anything (seed \(seed)): \(report.summary)")
        #expect(report.verdict == .linearizable,
                "seed \(seed) (replay with ORCH_FAULT_SEED=\(seed)): \(report.summary)\n\(report.violations.map(\.description).joined(separator: "\n"))\n\(cluster.logs)")
    }
}

/// Clients of the masters' etcd API doing a seeded mix of register operations on a few keys,
/// each call recorded with its call and return times (one monotonic clock) or as timed out.
final class RegisterWorkload: Sendable {
    private let connections: [EtcdGRPCConnection]
    private let up: Mutex<Set<Int>>
    private let seed: UInt64
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant

    init(cluster: ClusterHarness, seed: UInt64) throws {
        let security: HTTP2ClientTransport.Posix.TransportSecurity = cluster.tls ? TestTLS.clientMaterial.grpcClientSecurity() : .plaintext
        connections = try cluster.etcdPorts.map { try EtcdGRPCConnection(endpoint: "127.0.0.1:\($0)", security: security) }
        up = Mutex(Set(cluster.etcdPorts.indices))
        self.seed = seed
        start = clock.now
    }

    func close() async { for c in connections { await c.close() } }

    /// Takes a master out of the rotation before it is killed (so calls go only to live masters,
    /// and the history's uncertain calls are the ones the fault really interrupted).
    func markDown(_ master: Int) { up.withLock { _ = $0.remove(master) } }
    func markUp(_ master: Int) { up.withLock { _ = $0.insert(master) } }

    private func now() -> Int64 {
        let d = start.duration(to: clock.now)
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    func run(clients: Int, keys: Int, for duration: Duration) async throws -> [KeyValueOperation] {
        let deadline = clock.now + duration
        return try await withThrowingTaskGroup(of: [KeyValueOperation].self) { group in
            for client in 0..<clients {
                group.addTask { [self] in
                    // SplitMix64: the workload's choices depend only on the seed.
                    var random = SplitMix64(seed: seed &+ UInt64(client) &* 0x9E37_79B9_7F4A_7C15)
                    var history: [KeyValueOperation] = []
                    var lastSeen: [String: String?] = [:]
                    var n = 0
                    while clock.now < deadline {
                        let live = up.withLock { Array($0).sorted() }
                        guard !live.isEmpty else { try await Task.sleep(for: .milliseconds(10)); continue }
                        let connection = connections[live[Int(random.next() % UInt64(live.count))]]
                        let key = "reg/\(random.next() % UInt64(keys))"
                        n += 1
                        let value = "c\(client)-\(n)"
                        let operation: KeyValueOperation
                        switch random.next() % 3 {
                        case 0:
                            operation = await put(connection, client: client, key: key, value: value)
                        case 1:
                            operation = await get(connection, client: client, key: key)
                            if let v = operation.output, case .read(let seen) = v { lastSeen[key] = seen }
                        default:
                            operation = await compareAndSet(connection, client: client, key: key, expected: lastSeen[key] ?? nil, new: value)
                        }
                        history.append(operation)
                        // After a failure, pause: a master that is going down should not turn
                        // into hundreds of uncertain calls.
                        if operation.timedOut { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    return history
                }
            }
            var all: [KeyValueOperation] = []
            for try await part in group { all += part }
            return all
        }
    }

    private static let callTimeout = Duration.seconds(2)

    private var options: CallOptions {
        var options = CallOptions.defaults
        options.timeout = Self.callTimeout
        return options
    }

    private func put(_ connection: EtcdGRPCConnection, client: Int, key: String, value: String) async -> KeyValueOperation {
        let call = now()
        do {
            _ = try await connection.kv.put(.with { $0.key = Data(key.utf8); $0.value = Data(value.utf8) }, options: options)
            return .put(client: client, key: key, value: value, call: call, returned: now())
        } catch {
            return .putTimedOut(client: client, key: key, value: value, call: call)
        }
    }

    private func get(_ connection: EtcdGRPCConnection, client: Int, key: String) async -> KeyValueOperation {
        let call = now()
        do {
            let reply = try await connection.kv.range(.with { $0.key = Data(key.utf8) }, options: options)
            let value = reply.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
            return .get(client: client, key: key, call: call, returned: now(), value: value)
        } catch {
            return .getTimedOut(client: client, key: key, call: call)
        }
    }

    private func compareAndSet(_ connection: EtcdGRPCConnection, client: Int, key: String, expected: String?, new: String) async -> KeyValueOperation {
        let call = now()
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [.with {
            $0.key = Data(key.utf8)
            if let expected {
                $0.target = .value
                $0.result = .equal
                $0.value = Data(expected.utf8)
            } else {
                $0.target = .create
                $0.result = .equal
                $0.createRevision = 0
            }
        }]
        txn.success = [.with { $0.requestPut = .with { $0.key = Data(key.utf8); $0.value = Data(new.utf8) } }]
        do {
            let reply = try await connection.kv.txn(txn, options: options)
            return .compareAndSet(client: client, key: key, expected: expected, new: new, call: call, returned: now(), succeeded: reply.succeeded)
        } catch {
            return .compareAndSetTimedOut(client: client, key: key, expected: expected, new: new, call: call)
        }
    }
}
