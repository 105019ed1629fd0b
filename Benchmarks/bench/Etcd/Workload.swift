import ArgumentParser
import BenchSupport
import EtcdAPI
import EtcdProto
import EtcdAPITestSupport
import Foundation
import GRPCNIOTransportHTTP2

/// One measured scenario.
struct Scenario: Sendable {
    enum Operation: Sendable {
        case put
        case linearizableGet
        case serializableGet
    }

    var name: String
    var operation: Operation
    var clients: Int

    static let all: [Scenario] = [
        Scenario(name: "put, 1 client", operation: .put, clients: 1),
        Scenario(name: "put, 16 clients", operation: .put, clients: 16),
        Scenario(name: "put, 64 clients", operation: .put, clients: 64),
        Scenario(name: "linearizable get, 1 client", operation: .linearizableGet, clients: 1),
        Scenario(name: "linearizable get, 16 clients", operation: .linearizableGet, clients: 16),
        Scenario(name: "linearizable get, 64 clients", operation: .linearizableGet, clients: 64),
        Scenario(name: "serializable get, 64 clients", operation: .serializableGet, clients: 64),
    ]
}

/// What one scenario measured on one cluster.
struct Measurement: Sendable {
    var operations: Int
    var errors: Int
    var seconds: Double
    /// Latencies in milliseconds.
    var p50: Double
    var p99: Double

    var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }
}

/// Which members a run's clients talk to. etcd's clients (and its own benchmark tool, given
/// several `--endpoints`) spread over every member they are given; a REST load balancer does the
/// same with masters. Leader-only and follower-only runs show each path alone.
enum EndpointPath: String, CaseIterable, Sendable, ExpressibleByArgument {
    case spread, leader, follower

    /// The endpoints of this path, given the cluster's endpoints and its leader's.
    func endpoints(all: [String], leader: String) -> [String] {
        switch self {
        case .spread: all
        case .leader: [leader]
        case .follower: [all.first { $0 != leader } ?? leader]
        }
    }
}

/// Runs scenarios against one cluster's etcd v3 gRPC API: every client is a task issuing one
/// request at a time; clients share a few HTTP/2 connections, spread round-robin over the given
/// endpoints (so that with every member listed, a third of the clients talk to each).
final class Workload: Sendable {
    let name: String
    let endpoints: [String]
    /// Connections the clients are spread over (grpc-go's benchmark default is 1; a few let one
    /// HTTP/2 connection's serialisation not cap 64 clients).
    let connections: [EtcdGRPCConnection]
    static let valueSize = 256
    static let keySpace = 10_000

    init(name: String, endpoints: [String], connectionCount: Int = 9,
         security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext) throws {
        self.name = name
        self.endpoints = endpoints
        connections = try (0..<connectionCount).map { i in
            try EtcdGRPCConnection(endpoint: endpoints[i % endpoints.count], security: security)
        }
    }

    func close() async {
        for connection in connections { await connection.close() }
    }

    /// Fills the key space the gets read.
    func prepare() async throws {
        let value = Data(repeating: UInt8(ascii: "v"), count: Self.valueSize)
        for batch in stride(from: 0, to: Self.keySpace, by: 100) {
            var txn = Etcdserverpb_TxnRequest()
            txn.success = (batch..<min(batch + 100, Self.keySpace)).map { i in
                var op = Etcdserverpb_RequestOp()
                op.requestPut.key = Self.key(i)
                op.requestPut.value = value
                return op
            }
            _ = try await connections[0].kv.txn(txn)
        }
    }

    static func key(_ i: Int) -> Data { Data("bench/\(i)".utf8) }

    /// Runs `scenario` for `duration` after a warm-up, and measures.
    func run(_ scenario: Scenario, duration: Duration, warmUp: Duration = .seconds(1)) async throws -> Measurement {
        _ = try await drive(scenario, for: warmUp)
        return try await drive(scenario, for: duration)
    }

    private func drive(_ scenario: Scenario, for duration: Duration) async throws -> Measurement {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + duration
        let value = Data((0..<Self.valueSize).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let results = try await withThrowingTaskGroup(of: (latencies: [Double], errors: Int).self) { group in
            for client in 0..<scenario.clients {
                let connection = connections[client % connections.count]
                group.addTask {
                    var latencies: [Double] = []
                    latencies.reserveCapacity(20_000)
                    var errors = 0
                    var i = client
                    while clock.now < deadline {
                        i = (i &+ 7_919) % Self.keySpace
                        let t0 = clock.now
                        do {
                            switch scenario.operation {
                            case .put:
                                var put = Etcdserverpb_PutRequest()
                                put.key = Self.key(i)
                                put.value = value
                                _ = try await connection.kv.put(put)
                            case .linearizableGet, .serializableGet:
                                var get = Etcdserverpb_RangeRequest()
                                get.key = Self.key(i)
                                get.serializable = scenario.operation == .serializableGet
                                _ = try await connection.kv.range(get)
                            }
                            latencies.append((clock.now - t0).inMilliseconds)
                        } catch {
                            errors += 1
                            if errors > 1_000 { throw error }
                        }
                    }
                    return (latencies, errors)
                }
            }
            var all: [Double] = [], errors = 0
            for try await r in group {
                all += r.latencies
                errors += r.errors
            }
            return (all.sorted(), errors)
        }
        let seconds = (clock.now - start).inSeconds
        return Measurement(operations: results.0.count, errors: results.1, seconds: seconds,
                           p50: percentile(results.0, 0.5), p99: percentile(results.0, 0.99))
    }

    /// The endpoint among `endpoints` whose member leads (asked over Maintenance/Status), polled
    /// until the cluster has a leader.
    static func leaderEndpoint(_ endpoints: [String], security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext,
                               timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for endpoint in endpoints {
                let connection = try EtcdGRPCConnection(endpoint: endpoint, security: security)
                let status = try? await connection.maintenance.status(Etcdserverpb_StatusRequest())
                await connection.close()
                if let status, status.leader != 0, status.leader == status.header.memberID {
                    // Ready means it also serves a linearizable read.
                    let probe = try EtcdGRPCConnection(endpoint: endpoint, security: security)
                    var get = Etcdserverpb_RangeRequest()
                    get.key = Data("health".utf8)
                    let ok = (try? await probe.kv.range(get)) != nil
                    await probe.close()
                    if ok { return endpoint }
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LocalClusterError("no leader among \(endpoints) within \(timeout)")
    }
}
