import EtcdAPITestSupport
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Synchronization
import Testing
import TestGate

/// Issue 15's watch workload, short profile: writers put to a few keys through every master's etcd
/// API while the leader is killed with SIGKILL and restarted; three watchers follow the keys
/// through different masters and, when their stream breaks, watch again on another master from
/// the revision after the last one they saw (as etcd clients do). Every watcher must see the same
/// events in revision order, with no gap and no duplicate, and every acknowledged put among them.
@Suite(.serialized, .heavy) struct WatchWorkloadTests {
    @Test("watchers on every master see the same events, in order, complete, with the leader killed and restarted")
    func leaderKill() async throws {
        let seed = ProcessInfo.processInfo.environment["ORCH_FAULT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        let cluster = try ClusterHarness(masters: 3)
        defer { cluster.killAll() }
        do {
            try cluster.start()
            let leader = try await cluster.leaderIndex()
            let security: HTTP2ClientTransport.Posix.TransportSecurity = cluster.tls ? TestTLS.clientMaterial.grpcClientSecurity() : .plaintext
            let connections = try cluster.etcdPorts.map { try EtcdGRPCConnection(endpoint: "127.0.0.1:\($0)", security: security) }
            defer { Task { for c in connections { await c.close() } } }
            let start = try await connections[(leader + 1) % 3].kv.range(.with { $0.key = Data("w/".utf8); $0.countOnly = true }).header.revision
            let live = LiveMasters(count: 3)
            let watchers = (0..<3).map { WatchFollower(connections: connections, live: live, first: $0, from: start + 1) }
            let following = watchers.map { w in Task { await w.run() } }
            defer { for f in following { f.cancel() } }

            let writers = (0..<4).map { client in
                Task { await Self.write(connections, live: live, client: client, seed: seed, for: .seconds(7)) }
            }
            try await Task.sleep(for: .seconds(2))  // the fault schedule, not a wait for a condition
            live.down(leader)
            cluster.masters[leader].kill9()
            try await Task.sleep(for: .seconds(2))
            try cluster.masters[leader].start()
            try await cluster.waitUntil("the old leader serving again") { try await cluster.request(.GET, master: leader, "/readyz").status == 200 }
            live.up(leader)
            var acknowledged: Set<String> = []
            for w in writers { acknowledged.formUnion(await w.value) }
            // A floor that says the workload did something across the kill, not a throughput
            // claim: a loaded CI run acknowledged 58 in the 7 s.
            #expect(acknowledged.count >= 40, "seed \(seed): too few acknowledged puts to mean anything")

            // A last put every watcher must reach.
            let end = try await connections[(leader + 2) % 3].kv.put(.with { $0.key = Data("w/end".utf8); $0.value = Data("end".utf8) }).header.revision
            try await cluster.waitUntil("every watcher at the last put", timeout: .seconds(30)) { watchers.allSatisfy { $0.reached(end) } }
            let seen = watchers.map { $0.events(through: end) }
            for (i, events) in seen.enumerated() {
                #expect(!watchers[i].broken, "seed \(seed): watcher \(i)'s history was compacted away: a gap")
                #expect(events == seen[0], "seed \(seed): watcher \(i) saw other events than watcher 0 (\(events.count) vs \(seen[0].count))")
                #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision < $1.revision }, "seed \(seed): watcher \(i) saw events out of order or twice")
            }
            let values = Set(seen[0].map(\.value))
            #expect(acknowledged.isSubset(of: values), "seed \(seed): acknowledged puts no watcher saw: \(acknowledged.subtracting(values).sorted().prefix(10))")
            print("watch workload: seed \(seed), \(acknowledged.count) acknowledged puts, \(seen[0].count) events, reconnects \(watchers.map(\.reconnects))")
        } catch {
            Issue.record("seed \(seed): \(error)\n\(cluster.logs)")
            throw error
        }
    }

    /// Puts unique values to a few keys through random live masters; returns the acknowledged ones.
    static func write(_ connections: [EtcdGRPCConnection], live: LiveMasters, client: Int, seed: UInt64, for duration: Duration) async -> Set<String> {
        var random = SplitMix64(seed: seed &+ UInt64(client) &* 0x9E37_79B9_7F4A_7C15)
        var acknowledged: Set<String> = []
        var options = CallOptions.defaults
        options.timeout = .seconds(2)
        let deadline = ContinuousClock.now + duration
        var n = 0
        while ContinuousClock.now < deadline {
            let masters = live.current()
            let connection = connections[masters[Int(random.next() % UInt64(masters.count))]]
            n += 1
            let value = "c\(client)-\(n)"
            do {
                _ = try await connection.kv.put(.with { $0.key = Data("w/\(random.next() % 3)".utf8); $0.value = Data(value.utf8) }, options: options)
                acknowledged.insert(value)
            } catch {
                try? await Task.sleep(for: .milliseconds(100))  // a master going down: do not spin
            }
        }
        return acknowledged
    }
}

/// One etcd watch client of the `w/` keys that moves to another live master when its stream
/// breaks, resuming from the revision after the last event it saw.
final class WatchFollower: Sendable {
    struct Event: Sendable, Hashable {
        var revision: Int64
        var key: String
        var value: String
    }

    let connections: [EtcdGRPCConnection]
    let live: LiveMasters
    let first: Int
    let from: Int64
    private let seen = Mutex<[Event]>([])
    private let reconnectCount = Mutex(0)
    private let compacted = Mutex(false)

    init(connections: [EtcdGRPCConnection], live: LiveMasters, first: Int, from: Int64) {
        self.connections = connections
        self.live = live
        self.first = first
        self.from = from
    }

    var reconnects: Int { reconnectCount.withLock { $0 } }
    var broken: Bool { compacted.withLock { $0 } }
    func reached(_ revision: Int64) -> Bool { seen.withLock { ($0.last?.revision ?? 0) >= revision } }
    func events(through revision: Int64) -> [Event] { seen.withLock { $0.filter { $0.revision <= revision } } }

    func run() async {
        var master = first
        while !Task.isCancelled, !broken {
            let next = seen.withLock { $0.last.map { $0.revision + 1 } } ?? from
            do {
                try await connections[master].watch.watch(requestProducer: { writer in
                    try await writer.write(.with {
                        $0.createRequest.key = Data("w/".utf8)
                        $0.createRequest.rangeEnd = Data("w0".utf8)
                        $0.createRequest.startRevision = next
                    })
                    // Open until the reader ends the call.
                    while !Task.isCancelled { try await Task.sleep(for: .seconds(1)) }
                }, onResponse: { response in
                    for try await message in response.messages {
                        if message.compactRevision > 0 || (message.canceled && !message.created) {
                            self.compacted.withLock { $0 = true }
                            return
                        }
                        let events = message.events.filter { $0.type == .put }.map {
                            Event(revision: $0.kv.modRevision, key: String(decoding: $0.kv.key, as: UTF8.self), value: String(decoding: $0.kv.value, as: UTF8.self))
                        }
                        self.seen.withLock { $0 += events }
                    }
                })
            } catch {
                // The master went away or the call broke: resume elsewhere.
            }
            guard !Task.isCancelled else { return }
            reconnectCount.withLock { $0 += 1 }
            master = await live.next(after: master)
        }
    }
}
