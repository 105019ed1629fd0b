import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RaftTestSupport
import Synchronization

/// Three master processes on loopback, on the built-in store or on a fresh single-member etcd.
final class Masters {
    let root: String
    let api: [Int]
    let rpc: [Int]
    var processes: [Process] = []
    /// The etcd the masters keep their state in with `--store etcd`.
    var etcd: Process?
    let binary: URL
    let etcdPorts: [Int]

    /// - Parameter etcdBinary: when given, the masters run with `--store etcd` against an etcd
    ///   started from it for this cluster alone (its state must not carry over between runs).
    /// - Parameters:
    ///   - extraArguments: more flags for every master.
    ///   - spare: addresses reserved after the three for masters that join later (`startJoiner`).
    init(binary masterBinary: URL, algorithm: String, etcdBinary: String? = nil, extraArguments: [String] = [], spare: Int = 0) throws {
        binary = masterBinary
        root = FileManager.default.temporaryDirectory.appendingPathComponent("placement-bench-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let all = 3 + spare
        let base = try PortBlock.reserve(offsets: (0..<all).flatMap { [$0, 100 + $0, 200 + $0] } + [300, 301])
        api = (0..<all).map { base + $0 }
        rpc = (0..<all).map { base + 100 + $0 }
        etcdPorts = (0..<all).map { base + 200 + $0 }
        let peers = (0..<3).map { "m\($0 + 1)=127.0.0.1:\(rpc[$0])" }.joined(separator: ",")
        var storeArguments: [String] = []
        if let etcdBinary {
            let client = "http://127.0.0.1:\(base + 300)", peer = "http://127.0.0.1:\(base + 301)"
            let e = Process()
            e.executableURL = URL(fileURLWithPath: etcdBinary)
            e.arguments = ["--name", "bench", "--data-dir", "\(root)/etcd", "--listen-client-urls", client, "--advertise-client-urls", client,
                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "bench=\(peer)",
                           "--logger", "zap", "--log-level", "warn"]
            FileManager.default.createFile(atPath: "\(root)/etcd.log", contents: nil)
            e.standardOutput = FileHandle(forWritingAtPath: "\(root)/etcd.log")
            e.standardError = e.standardOutput
            try e.run()
            etcd = e
            storeArguments = ["--store", "etcd", "--etcd-endpoints", client]
        }
        for i in 0..<3 {
            let p = Process()
            p.executableURL = masterBinary
            p.arguments = ["--id", "m\(i + 1)", "--data-dir", "\(root)/m\(i + 1)", "--api-addr", "127.0.0.1:\(api[i])",
                           "--rpc-addr", "127.0.0.1:\(rpc[i])", "--etcd-addr", "127.0.0.1:\(base + 200 + i)", "--peers", peers,
                           "--scheduler", algorithm, "--node-not-ready-after", "3600", "--node-down-after", "7200"] + storeArguments + extraArguments
            let log = FileHandle(forWritingAtPath: "\(root)/m\(i + 1).log") ?? {
                FileManager.default.createFile(atPath: "\(root)/m\(i + 1).log", contents: nil)
                return FileHandle(forWritingAtPath: "\(root)/m\(i + 1).log")!
            }()
            p.standardOutput = log
            p.standardError = log
            try p.run()
            processes.append(p)
        }
    }

    func dataDir(_ i: Int) -> String { "\(root)/m\(i + 1)" }
    func logPath(_ i: Int) -> String { "\(root)/m\(i + 1).log" }

    /// SIGKILLs master `i` and waits for it.
    func killMaster(_ i: Int) {
        let p = processes[i]
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// Starts master `index` (a spare address) empty, joining through master `via`; it becomes
    /// `processes[index]` (the ones before it must exist).
    func startJoiner(index: Int, via: Int) throws {
        let p = Process()
        p.executableURL = binary
        p.arguments = ["--id", "m\(index + 1)", "--data-dir", dataDir(index), "--api-addr", "127.0.0.1:\(api[index])",
                       "--rpc-addr", "127.0.0.1:\(rpc[index])", "--etcd-addr", "127.0.0.1:\(etcdPorts[index])",
                       "--join", "127.0.0.1:\(rpc[via])", "--node-not-ready-after", "3600", "--node-down-after", "7200",
                       "--log-level", "info"]
        FileManager.default.createFile(atPath: logPath(index), contents: nil)
        let log = FileHandle(forWritingAtPath: logPath(index))
        p.standardOutput = log
        p.standardError = log
        try p.run()
        processes.append(p)
    }

    func stop() {
        let all = processes + [etcd].compactMap { $0 }
        for p in all where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in all { p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Resident memory of a master in MB, from /proc.
    func rssMB(_ i: Int) -> Double { Self.rssMB(pid: processes[i].processIdentifier) }

    /// Resident memory of process `pid` in MB, from /proc.
    static func rssMB(pid: Int32) -> Double {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
            return kb / 1024
        }
        return 0
    }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// The REST client of `bench placement`.
let http = HTTPClient(eventLoopGroupProvider: .singleton)

@Sendable func get(_ port: Int, _ path: String) async throws -> (Int, [String: Any]) {
    let response = try await http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 64 << 20)
    let json = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    return (Int(response.status.code), json)
}

@Sendable func getText(_ port: Int, _ path: String) async throws -> String {
    let response = try await http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(30))
    return String(buffer: try await response.body.collect(upTo: 64 << 20))
}

@Sendable func delete(_ port: Int, _ path: String) async throws -> Int {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .DELETE
    let response = try await http.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    return Int(response.status.code)
}

@Sendable func post(_ port: Int, _ path: String, _ body: String) async throws -> Int {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await http.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    return Int(response.status.code)
}

func waitFor(_ what: String, timeout: Duration, interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: interval)
    }
    throw NSError(domain: "bench placement", code: 1, userInfo: [NSLocalizedDescriptionKey: "timed out waiting for \(what)"])
}

/// Runs `body` for 0..<count with at most `width` at a time.
func concurrently(_ count: Int, _ width: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<count {
            if i >= width { try await group.next() }
            group.addTask { try await body(i) }
        }
        try await group.waitForAll()
    }
}
