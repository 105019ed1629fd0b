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

/// One call of the register workload and the master it went to.
struct WorkloadOperation: Sendable {
    var master: Int
    var operation: KeyValueOperation

    var isWrite: Bool {
        switch operation.input {
        case .put, .compareAndSet: true
        case .get: false
        }
    }

    /// A put that was acknowledged, or a compare-and-set that answered it succeeded.
    var isAcknowledgedWrite: Bool {
        switch operation.output {
        case .written?: true
        case .compareAndSet(let succeeded)?: succeeded
        default: false
        }
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

    /// Nanoseconds since the workload was made: the clock of its history and of fault schedules.
    func now() -> Int64 {
        let d = start.duration(to: clock.now)
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    func run(clients: Int, keys: Int, for duration: Duration) async throws -> [WorkloadOperation] {
        let deadline = clock.now + duration
        return try await withThrowingTaskGroup(of: [WorkloadOperation].self) { group in
            for client in 0..<clients {
                group.addTask { [self] in
                    // SplitMix64: the workload's choices depend only on the seed.
                    var random = SplitMix64(seed: seed &+ UInt64(client) &* 0x9E37_79B9_7F4A_7C15)
                    var history: [WorkloadOperation] = []
                    var lastSeen: [String: String?] = [:]
                    var n = 0
                    while clock.now < deadline {
                        let live = up.withLock { Array($0).sorted() }
                        guard !live.isEmpty else { try await Task.sleep(for: .milliseconds(10)); continue }
                        let master = live[Int(random.next() % UInt64(live.count))]
                        let connection = connections[master]
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
                        history.append(WorkloadOperation(master: master, operation: operation))
                        // After a failure, pause: a master that is going down should not turn
                        // into hundreds of uncertain calls.
                        if operation.timedOut { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    return history
                }
            }
            var all: [WorkloadOperation] = []
            for try await part in group { all += part }
            return all
        }
    }

    /// After the faults healed: one linearizable get of every key through every master, each
    /// retried until it answers (by `deadline`), as client `1000 + master`. Appended to the
    /// history, they prove every acknowledged write is still there, on every master: a lost write
    /// leaves a final read the checker cannot place.
    /// - Returns: the reads, and the (master, key) pairs that never answered.
    func finalReads(keys: Int, deadline: ContinuousClock.Instant) async -> (reads: [WorkloadOperation], unanswered: [String]) {
        var reads: [WorkloadOperation] = []
        var unanswered: [String] = []
        for master in connections.indices {
            for k in 0..<keys {
                let key = "reg/\(k)"
                var answered = false
                repeat {
                    let operation = await get(connections[master], client: 1000 + master, key: key)
                    if !operation.timedOut {
                        reads.append(WorkloadOperation(master: master, operation: operation))
                        answered = true
                    } else {
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                } while !answered && clock.now < deadline
                if !answered { unanswered.append("m\(master + 1) \(key)") }
            }
        }
        return (reads, unanswered)
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
