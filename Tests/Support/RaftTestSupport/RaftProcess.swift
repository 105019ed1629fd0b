import Foundation
import Synchronization

/// A `raft-node` server in its own process, driven through its stdin/stdout line protocol.
/// Used by the integration tests and the benchmark harness.
public final class RaftProcess: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public let id: UInt64
    public let port: Int
    public let dataDir: String
    private let binary: URL
    private let peers: String
    private let extraArgs: [String]

    private struct State {
        var process: Process?
        var stdin: FileHandle?
        var waiting: [String: CheckedContinuation<String, any Error>] = [:]
        var nextTag = 0
        var exited = true
    }

    private let state = Mutex(State())

    public init(binary: URL, id: UInt64, port: Int, dataDir: String, peers: String, extraArgs: [String] = []) {
        self.binary = binary
        self.id = id
        self.port = port
        self.dataDir = dataDir
        self.peers = peers
        self.extraArgs = extraArgs
    }

    /// Starts (or restarts) the process on the same data directory.
    public func start() throws {
        // Writing to a killed node's stdin must fail with EPIPE, not kill the harness.
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--id", "\(id)", "--data-dir", dataDir, "--peers", peers] + extraArgs
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        state.withLock {
            $0.process = process
            $0.stdin = input.fileHandleForWriting
            $0.exited = false
        }
        let reader = output.fileHandleForReading
        Thread.detachNewThread { [self] in
            var buffer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                // Raw read(2): FileHandle.availableData traps on EINTR, which SIGCHLD from a
                // killed sibling process can cause.
                let n = chunk.withUnsafeMutableBytes { read(reader.fileDescriptor, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                buffer += chunk[..<n]
                while let nl = buffer.firstIndex(of: 10) {
                    let line = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeFirst(nl + 1)
                    self.deliver(line)
                }
            }
            self.exited()
        }
    }

    private func deliver(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 2).map(String.init)
        guard words.count >= 2, words[0] == "ok" || words[0] == "err" else { return }
        let cont = state.withLock { $0.waiting.removeValue(forKey: words[1]) }
        let rest = words.count > 2 ? words[2] : ""
        if words[0] == "ok" {
            cont?.resume(returning: rest)
        } else {
            cont?.resume(throwing: Failure("node \(id): \(rest)"))
        }
    }

    private func exited() {
        let waiting = state.withLock { s -> [CheckedContinuation<String, any Error>] in
            s.exited = true
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for c in waiting { c.resume(throwing: Failure("node \(id) exited")) }
    }

    /// Sends `command` with a fresh tag and returns the answer after "ok TAG", or throws on "err",
    /// on exit, or after `timeout`.
    public func send(_ command: String, _ args: String = "", timeout: Duration = .seconds(30)) async throws -> String {
        try await withThrowingTaskGroup(of: String.self) { group in
            let tag: String = state.withLock { s in
                s.nextTag += 1
                return "t\(s.nextTag)"
            }
            group.addTask {
                try await withCheckedThrowingContinuation { cont in
                    let handle: FileHandle? = self.state.withLock { s in
                        if s.exited { return nil }
                        s.waiting[tag] = cont
                        return s.stdin
                    }
                    guard let handle else {
                        cont.resume(throwing: Failure("node \(self.id) is not running"))
                        return
                    }
                    do {
                        try handle.write(contentsOf: Data("\(command) \(tag) \(args)\n".utf8))
                    } catch {
                        let cont = self.state.withLock { $0.waiting.removeValue(forKey: tag) }
                        cont?.resume(throwing: Failure("node \(self.id): cannot write its stdin: \(error)"))
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                let cont = self.state.withLock { $0.waiting.removeValue(forKey: tag) }
                cont?.resume(throwing: Failure("node \(self.id): no answer to \(command) within \(timeout)"))
                throw Failure("timeout")
            }
            let answer = try await group.next()!
            group.cancelAll()
            return answer
        }
    }

    /// Parsed `status`: role, term, leader, commit, applied...
    public func status(timeout: Duration = .seconds(2)) async throws -> [String: String] {
        let line = try await send("status", timeout: timeout)
        var out: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }

    /// SIGKILL: no chance to flush or say goodbye.
    public func kill9() {
        let process = state.withLock { $0.process }
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public var isRunning: Bool { state.withLock { $0.process?.isRunning ?? false } }
}

/// A cluster of `raft-node` processes on 127.0.0.1.
public final class RaftProcessCluster: Sendable {
    public let nodes: [RaftProcess]
    public let root: String

    /// Finds the `raft-node` binary next to the running test or benchmark executable.
    public static func locateBinary(named name: String = "raft-node") -> URL? {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        for dir in candidates {
            var d = dir
            for _ in 0..<4 {
                let url = d.appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
                d = d.deletingLastPathComponent()
            }
        }
        return nil
    }

    public init(size: Int = 3, binary: URL, extraArgs: [String] = []) throws {
        let root = FileManager.default.temporaryDirectory
            .appendingPathComponent("raft-cluster-\(UUID().uuidString.prefix(8))").path
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Free ports below the ephemeral range, where no outgoing connection can take them.
        let base = try PortBlock.reserve(offsets: Array(1...size))
        let peers = (1...size).map { "\($0)=127.0.0.1:\(base + $0)" }.joined(separator: ",")
        nodes = (1...size).map { i in
            RaftProcess(binary: binary, id: UInt64(i), port: base + i, dataDir: "\(root)/n\(i)", peers: peers,
                        extraArgs: extraArgs)
        }
    }

    public func start() throws {
        for n in nodes { try n.start() }
    }

    public func node(_ id: UInt64) -> RaftProcess { nodes[Int(id) - 1] }

    /// Polls until a running node reports itself leader; returns it.
    public func waitForLeader(excluding: Set<UInt64> = [], timeout: Duration = .seconds(20)) async throws -> RaftProcess {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for n in nodes where !excluding.contains(n.id) && n.isRunning {
                if let s = try? await n.status(timeout: .milliseconds(500)), s["role"] == "leader" { return n }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RaftProcess.Failure("no leader within \(timeout)")
    }

    public func stop() {
        for n in nodes { n.kill9() }
        try? FileManager.default.removeItem(atPath: root)
    }
}
