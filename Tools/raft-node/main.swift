// A standalone Raft server for tests and benchmarks: SQLite log, gRPC transport between servers,
// and a line protocol on stdin/stdout for the harness that drives it.
//
// Usage: raft-node --id N --data-dir DIR --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,... [--tick-ms 100]
//                  [--election-ticks 10] [--snapshot-every 10000] [--tls-dir DIR]
//
// --tls-dir: mutual TLS between the nodes, from a `master tls init DIR --master m1 --master m2 ...`
// directory (node N is master `mN`), as the masters' Raft port runs it (`bench raft --tls`).
//
// Commands (one per line on stdin; answers on stdout, each starting with the command's tag):
//   propose TAG TEXT     -> "ok TAG INDEX" | "err TAG MESSAGE"   (TEXT is stored, see `has`)
//   read TAG             -> "ok TAG COUNT HASH" after a linearizable read (count and hash of applied)
//   has TAG TEXT         -> "ok TAG yes|no" after a linearizable read
//   status TAG           -> "ok TAG role=... term=... leader=... commit=... applied=... syncs=... entries=..."
//   transfer TAG NODE    -> "ok TAG" once NODE leads
//   bench TAG CLIENTS PER_CLIENT SIZE
//                        -> "ok TAG entries=... seconds=... eps=... p50_ms=... p99_ms=... entries_per_sync=..."
// It prints "ready" once it serves.

import BenchSupport
import ClusterSecurity
import Foundation
import Logging
import Raft
import RaftGRPC
import Synchronization

/// The replicated state: a count and an order-sensitive hash of every applied command, plus the
/// texts proposed through `propose` (benchmark payloads are only counted, to keep snapshots small).
final class DemoMachine: RaftStateMachine {
    struct State {
        var count: UInt64 = 0
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var texts: Set<String> = []
    }

    let state = Mutex(State())

    func apply(_ command: [UInt8], index: UInt64) -> [UInt8] {
        state.withLock { s in
            s.count += 1
            for b in command {
                s.hash ^= UInt64(b)
                s.hash = s.hash &* 0x100_0000_01b3
            }
            if command.first == UInt8(ascii: "k") { s.texts.insert(String(decoding: command.dropFirst(), as: UTF8.self)) }
        }
        return []
    }

    func snapshot() -> [UInt8] {
        state.withLock { s in
            var out = Array("\(s.count) \(s.hash)\n".utf8)
            for t in s.texts.sorted() { out += Array((t + "\n").utf8) }
            return out
        }
    }

    func restore(_ data: [UInt8], index: UInt64) throws {
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let head = lines.first?.split(separator: " ") ?? []
        guard head.count == 2, let count = UInt64(head[0]), let hash = UInt64(head[1]) else {
            throw RaftNodeError.rejected("malformed snapshot")
        }
        let texts = Set(lines.dropFirst().filter { !$0.isEmpty }.map(String.init))
        state.withLock { $0 = State(count: count, hash: hash, texts: texts) }
    }
}

/// Serializes output lines: one write(2) per line, straight to fd 1, retried on EINTR.
let outputLock = Mutex(())
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    outputLock.withLock { _ in
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { exit(0) } // the harness is gone
            offset += n
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("raft-node: \(message)\n".utf8))
    exit(2)
}

// MARK: - Arguments

var options: [String: String] = [:]
var argv = CommandLine.arguments.dropFirst()
while let flag = argv.popFirst() {
    guard flag.hasPrefix("--"), let value = argv.popFirst() else { fail("expected --flag value, got \(flag)") }
    options[String(flag.dropFirst(2))] = value
}
guard let id = options["id"].flatMap(UInt64.init), id > 0 else { fail("--id must be a positive integer") }
guard let dataDir = options["data-dir"] else { fail("--data-dir is required") }
guard let peerList = options["peers"] else { fail("--peers is required (1=host:port,2=host:port,...)") }
var peers: [NodeID: (host: String, port: Int)] = [:]
for item in peerList.split(separator: ",") {
    let parts = item.split(separator: "=")
    let hp = parts.count == 2 ? parts[1].split(separator: ":") : []
    guard parts.count == 2, let pid = UInt64(parts[0]), hp.count == 2, let port = Int(hp[1]) else {
        fail("bad peer \(item): expected ID=HOST:PORT")
    }
    peers[pid] = (String(hp[0]), port)
}
guard let me = peers[id] else { fail("--peers must include this node's own id \(id)") }
let tickMs = options["tick-ms"].flatMap(Int.init) ?? 100
let electionTicks = options["election-ticks"].flatMap(Int.init) ?? 10

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = ProcessInfo.processInfo.environment["RAFT_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .notice
    return h
}
let logger = Logger(label: "raft-node")

try? FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
let storage: SQLiteLogStorage
do {
    storage = try SQLiteLogStorage(path: dataDir + "/raft.sqlite")
} catch {
    fail("cannot open \(dataDir)/raft.sqlite: \(error)")
}
let machine = DemoMachine()
var transportConfiguration = GRPCRaftTransport.Configuration()
if let tlsDir = options["tls-dir"] {
    do {
        let directory = TLSDirectory(path: tlsDir)
        let identity = try ClusterIdentity(role: .master, name: "m\(id)")
        let members = Set(peers.keys)
        let tls = try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(identity),
                                  keyFile: directory.key(identity))
        transportConfiguration.security = GRPCRaftTransport.Security(
            server: try .mutualTLS(tls),
            member: { peer in
                // Only master `mN` may speak for node N.
                guard let peer = peer as? AuthenticatedPeer, peer.identity.role == .master,
                      peer.identity.name.hasPrefix("m"), let node = UInt64(peer.identity.name.dropFirst()),
                      members.contains(node) else { return nil }
                return node
            },
            client: tls.grpcClientSecurity())
    } catch {
        fail("--tls-dir \(tlsDir): \(error)")
    }
}
let transport = GRPCRaftTransport(id: id, listen: ("127.0.0.1", me.port), peers: peers, logger: logger,
                                  configuration: transportConfiguration)
var config = RaftConfig(id: id, seed: UInt64(UInt32.random(in: 1...UInt32.max)))
config.electionTick = electionTicks
var nodeOptions = RaftNode<ContinuousClock>.Options()
nodeOptions.tickInterval = .milliseconds(tickMs)
nodeOptions.snapshotThreshold = options["snapshot-every"].flatMap(UInt64.init) ?? 10_000
let node: RaftNode<ContinuousClock>
do {
    node = try RaftNode(config: config, storage: storage, machine: machine, transport: transport,
                        bootstrap: peers.keys.sorted(), clock: ContinuousClock(), options: nodeOptions, logger: logger)
} catch {
    fail("cannot start: \(error)")
}

// MARK: - Commands

func runBench(clients: Int, perClient: Int, size: Int) async throws -> String {
    let before = await node.status()
    let clock = ContinuousClock()
    let start = clock.now
    let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
        for c in 0..<clients {
            group.addTask {
                var lat: [Double] = []
                lat.reserveCapacity(perClient)
                var payload = [UInt8](repeating: UInt8(ascii: "b"), count: size)
                for i in 0..<perClient {
                    payload[0] = UInt8(truncatingIfNeeded: c)
                    payload[1] = UInt8(truncatingIfNeeded: i)
                    let t0 = clock.now
                    _ = try await node.propose(payload)
                    lat.append(t0.duration(to: clock.now).inMilliseconds)
                }
                return lat
            }
        }
        var all: [Double] = []
        for try await l in group { all += l }
        return all.sorted()
    }
    let seconds = start.duration(to: clock.now).inSeconds
    let after = await node.status()
    let syncs = after.syncs - before.syncs
    let entries = after.entriesPersisted - before.entriesPersisted
    return String(format: "entries=%d seconds=%.3f eps=%.0f p50_ms=%.3f p99_ms=%.3f entries_per_sync=%.1f",
                  latencies.count, seconds, Double(latencies.count) / seconds,
                  percentile(latencies, 0.5), percentile(latencies, 0.99), syncs == 0 ? 0 : Double(entries) / Double(syncs))
}

func handle(_ line: String) async {
    let words = line.split(separator: " ", maxSplits: 2).map(String.init)
    guard words.count >= 2 else {
        say("err - expected: COMMAND TAG [ARGS]")
        return
    }
    let (command, tag) = (words[0], words[1])
    let rest = words.count > 2 ? words[2] : ""
    do {
        switch command {
        case "propose":
            _ = try await node.propose(Array(("k" + rest).utf8))
            say("ok \(tag) \(await node.status().appliedIndex)")
        case "read":
            try await node.linearizableRead()
            let s = machine.state.withLock { ($0.count, $0.hash) }
            say("ok \(tag) \(s.0) \(s.1)")
        case "has":
            try await node.linearizableRead()
            let present = machine.state.withLock { $0.texts.contains(rest) }
            say("ok \(tag) \(present ? "yes" : "no")")
        case "status":
            let s = await node.status()
            say("ok \(tag) role=\(s.role) term=\(s.term) leader=\(s.leader) commit=\(s.commitIndex) applied=\(s.appliedIndex) last=\(s.lastIndex) syncs=\(s.syncs) entries=\(s.entriesPersisted)")
        case "transfer":
            guard let target = UInt64(rest) else { throw RaftNodeError.rejected("transfer needs a node id") }
            try await node.transferLeadership(to: target)
            say("ok \(tag)")
        case "bench":
            let n = rest.split(separator: " ").compactMap { Int($0) }
            guard n.count == 3, n.allSatisfy({ $0 > 0 }) else { throw RaftNodeError.rejected("bench CLIENTS PER_CLIENT SIZE") }
            say("ok \(tag) " + (try await runBench(clients: n[0], perClient: n[1], size: n[2])))
        default:
            say("err \(tag) unknown command \(command)")
        }
    } catch {
        say("err \(tag) \(error)")
    }
}

// stdin is read on its own thread: a blocking read must not hold a cooperative thread.
let (lines, linesContinuation) = AsyncStream<String>.makeStream()
Thread.detachNewThread {
    while let line = readLine() { linesContinuation.yield(line) }
    linesContinuation.finish()
}

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await node.run() }
    group.addTask {
        say("ready")
        await withTaskGroup(of: Void.self) { commands in
            for await line in lines {
                commands.addTask { await handle(line) }
            }
        }
        // stdin closed: the harness is gone, stop.
        throw CancellationError()
    }
    try await group.next()
    group.cancelAll()
}
