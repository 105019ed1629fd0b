import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RaftTestSupport
import Synchronization

/// A process of the cluster under test: started with its output in a log file, killed with
/// SIGKILL or SIGTERM, restarted with the same arguments (and so the same data directory).
final class ManagedProcess: Sendable {
    let name: String
    let binary: URL
    let arguments: [String]
    let logPath: String
    private let process = Mutex<Process?>(nil)

    /// Variables added to the test's environment for this process (LD_PRELOAD of a fault library, say).
    let environment: [String: String]

    init(name: String, binary: URL, arguments: [String], logPath: String, environment: [String: String] = [:]) {
        self.name = name
        self.binary = binary
        self.arguments = arguments
        self.logPath = logPath
        self.environment = environment
    }

    func start() throws {
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let p = Process()
        if environment.isEmpty {
            p.executableURL = binary
            p.arguments = arguments
        } else {
            // Through env(1), which execs in place (same pid): the variables reach the binary
            // exactly as given, on top of the test's own environment.
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [binary.path] + arguments
        }
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process.withLock { $0 = p }
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// The process id while it runs.
    var pid: Int32? { process.withLock { p in p.flatMap { $0.isRunning ? $0.processIdentifier : nil } } }

    /// How the process ended; nil while it runs or before it started.
    var termination: (reason: Process.TerminationReason, status: Int32)? {
        process.withLock { p in
            guard let p, !p.isRunning else { return nil }
            return (p.terminationReason, p.terminationStatus)
        }
    }

    func signal(_ sig: Int32) {
        process.withLock { p in
            if let p, p.isRunning { kill(p.processIdentifier, sig) }
        }
    }

    /// Kills and waits until the process is gone (bounded).
    func kill9() {
        signal(SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while isRunning && Date() < deadline { usleep(10_000) }
    }

    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }
}

/// Masters and workers as real processes on 127.0.0.1, with a REST client for the tests.
final class ClusterHarness: Sendable {
    /// Clusters run with TLS unless a test asks otherwise; `ORCH_TEST_TLS=0` runs the suite in
    /// plain text.
    static let tlsByDefault = ProcessInfo.processInfo.environment["ORCH_TEST_TLS"] != "0"

    let root: String
    let masters: [ManagedProcess]
    let apiPorts: [Int]
    let rpcPorts: [Int]
    let etcdPorts: [Int]
    let workers = Mutex<[ManagedProcess]>([])
    /// Masters started later with `--join` (`startJoiningMaster`), at the spare addresses.
    let joiners = Mutex<[ManagedProcess]>([])
    /// The shared client (HTTPS with the test CA when `tls`): it needs no shutdown, so a harness
    /// can be dropped at any point of a failing test.
    let http: HTTPClient
    /// Whether the cluster runs with TLS (`TestTLS`): the REST API is then HTTPS.
    let tls: Bool
    var scheme: String { tls ? "https" : "http" }
    let masterBinary: URL
    let workerBinary: URL
    let joinToken = "integration-token"

    enum HarnessError: Error, CustomStringConvertible {
        case missingBinary(String), timeout(String), http(Int, String)
        var description: String {
            switch self {
            case .missingBinary(let name): "cannot find the \(name) binary next to the tests (swift build first)"
            case .timeout(let what): "timed out waiting for \(what)"
            case .http(let status, let body): "HTTP \(status): \(body)"
            }
        }
    }

    /// The user every process runs as (through `setpriv`), when not the test's own.
    let runAs: TestUser?
    /// With `proxied`: the proxy every master reaches the others through (`FaultProxy`).
    let proxy: FaultProxy?

    /// - Parameters:
    ///   - masterArgs: extra flags for every master (health timings, say).
    ///   - runAs: run masters and workers as this user (its data directories are given to it).
    ///   - tls: run with the test CA's certificates (the production setting); false for plain text.
    ///   - masterEnvironment: extra environment variables per master index.
    ///   - proxied: master i reaches master j through a `FaultProxy` port of its own (its --peers
    ///     list names the proxy for every other master, its real rpc address for itself), so that
    ///     a test can cut links between masters; workers and clients still reach masters directly.
    ///   - spareMasters: addresses (api, rpc, etcd ports) reserved after the masters' for masters
    ///     that join later (`startJoiningMaster`); `apiPorts` and the others list them too.
    init(masters count: Int, masterArgs: [String] = [], runAs: TestUser? = nil, tls: Bool = ClusterHarness.tlsByDefault,
         masterEnvironment: [Int: [String: String]] = [:], proxied: Bool = false, spareMasters: Int = 0) throws {
        self.runAs = runAs
        self.tls = tls
        self.http = tls ? TestTLS.http : HTTPClient.shared
        if tls, let runAs { try TestTLS.share(with: runAs) }
        guard let master = RaftProcessCluster.locateBinary(named: "master") else { throw HarnessError.missingBinary("master") }
        guard let worker = RaftProcessCluster.locateBinary(named: "worker") else { throw HarnessError.missingBinary("worker") }
        masterBinary = master
        workerBinary = worker
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-it-\(UUID().uuidString.prefix(8))").path
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        if let runAs { try runAs.own(root) }
        let workerSlots = 20
        // The proxy's port for the link from master i to master j: base + 500 + i * count + j.
        let proxyOffsets = proxied ? (0..<count).flatMap { i in (0..<count).filter { $0 != i }.map { 500 + i * count + $0 } } : []
        let all = count + spareMasters
        let base = try PortBlock.reserve(offsets: (0..<all).flatMap { [$0, 100 + $0, 200 + $0] } + (400..<400 + workerSlots)  // workers: rpcPorts[0] + 300 + i
                                         + proxyOffsets)
        apiPorts = (0..<all).map { base + $0 }
        rpcPorts = (0..<all).map { base + 100 + $0 }
        etcdPorts = (0..<all).map { base + 200 + $0 }
        if proxied {
            proxy = try FaultProxy(links: (0..<count).flatMap { i in
                (0..<count).filter { $0 != i }.map { j in
                    FaultProxy.Link(from: i, to: j, port: base + 500 + i * count + j, target: base + 100 + j)
                }
            })
        } else {
            proxy = nil
        }
        /// Master i's --peers: the same ids in the same order on every master (Raft's node ids
        /// are the positions); only the addresses it dials differ when proxied.
        func peers(of i: Int) -> String {
            (0..<count).map { j in
                "m\(j + 1)=127.0.0.1:\(proxied && j != i ? base + 500 + i * count + j : base + 100 + j)"
            }.joined(separator: ",")
        }
        masters = (0..<count).map { i in
            let (binary, arguments) = Self.command(master, [
                "--id", "m\(i + 1)", "--data-dir", "\(root)/m\(i + 1)",
                "--api-addr", "127.0.0.1:\(base + i)", "--rpc-addr", "127.0.0.1:\(base + 100 + i)",
                "--etcd-addr", "127.0.0.1:\(base + 200 + i)", "--peers", peers(of: i), "--join-token", "integration-token",
                "--log-level", "info",
            ] + (tls ? TestTLS.masterFlags(i) : []) + masterArgs, as: runAs)
            return ManagedProcess(name: "m\(i + 1)", binary: binary, arguments: arguments, logPath: "\(root)/m\(i + 1).log",
                                  environment: masterEnvironment[i] ?? [:])
        }
    }

    /// `binary arguments`, or the same through `setpriv` as `user` (execs in place: same pid).
    static func command(_ binary: URL, _ arguments: [String], as user: TestUser?) -> (URL, [String]) {
        guard let user else { return (binary, arguments) }
        return (URL(fileURLWithPath: "/usr/bin/setpriv"),
                ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", binary.path] + arguments)
    }

    func start() throws {
        for m in masters { try m.start() }
    }

    /// Starts master `index` (a spare address: `masters.count` or later) with an empty data
    /// directory and `--join` naming master `via`'s rpc address; its name is m<index + 1>, and
    /// with `tls` it holds that master's certificate (`TestTLS` makes m1...m5).
    @discardableResult
    func startJoiningMaster(index: Int, via: Int, extraArgs: [String] = []) throws -> ManagedProcess {
        precondition(index >= masters.count && index < apiPorts.count, "not a spare master address")
        let name = "m\(index + 1)"
        let (binary, arguments) = Self.command(masterBinary, [
            "--id", name, "--data-dir", "\(root)/\(name)",
            "--api-addr", "127.0.0.1:\(apiPorts[index])", "--rpc-addr", "127.0.0.1:\(rpcPorts[index])",
            "--etcd-addr", "127.0.0.1:\(etcdPorts[index])", "--join", "127.0.0.1:\(rpcPorts[via])",
            "--join-token", joinToken, "--log-level", "info",
        ] + (tls ? TestTLS.masterFlags(index) : []) + extraArgs, as: runAs)
        let m = ManagedProcess(name: name, binary: binary, arguments: arguments, logPath: "\(root)/\(name).log")
        try m.start()
        joiners.withLock { $0.append(m) }
        return m
    }

    /// Starts a worker (process runtime) joined through the given masters, with `extraArgs` last.
    @discardableResult
    /// `masters` replaces the list of master addresses (a fault proxy's ports, say).
    func addWorker(name: String, cpu: Int = 4000, memory: Int = 8192, labels: String = "", through: [Int]? = nil,
                   masters addresses: [String]? = nil, runtime: String = "process", extraArgs: [String] = []) throws -> ManagedProcess {
        let index = workers.withLock { $0.count }
        let port = rpcPorts[0] + 300 + index
        let mastersList = (addresses ?? (through ?? Array(0..<masters.count)).map { "127.0.0.1:\(rpcPorts[$0])" }).joined(separator: ",")
        var args = ["--masters", mastersList, "--join-token", joinToken, "--runtime", runtime, "--data-dir", "\(root)/\(name)",
                    "--cpu", "\(cpu)", "--memory", "\(memory)", "--listen-addr", "127.0.0.1:\(port)", "--log-level", "info"]
        if !labels.isEmpty { args += ["--labels", labels] }
        if tls { args += TestTLS.workerFlags }
        args += extraArgs
        let (binary, arguments) = Self.command(workerBinary, args, as: runAs)
        let w = ManagedProcess(name: name, binary: binary, arguments: arguments, logPath: "\(root)/\(name).log")
        try w.start()
        workers.withLock { $0.append(w) }
        return w
    }

    /// What a worker started by a test needs to reach this cluster (empty in plain text).
    var workerTLSFlags: [String] { tls ? TestTLS.workerFlags : [] }

    /// etcdctl's flags for the masters' etcd API: with TLS, the CA and the test client's
    /// certificate (the API requires one, as etcd's --client-cert-auth does).
    var etcdctlTLSFlags: [String] {
        guard tls else { return [] }
        let client = TestTLS.clientIdentity
        return ["--cacert", TestTLS.directory.caCertificate, "--cert", TestTLS.directory.certificate(client),
                "--key", TestTLS.directory.key(client)]
    }

    /// The node id a worker keeps in its data directory.
    func nodeID(ofWorker name: String) -> String? {
        (try? String(contentsOfFile: "\(root)/\(name)/node-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Kills every process at once (synchronously, so a `defer` in a test that is failing still
    /// leaves nothing running).
    func killAll() {
        for m in masters { m.kill9() }
        for m in joiners.withLock({ $0 }) { m.kill9() }
        for w in workers.withLock({ $0 }) { w.kill9() }
        proxy?.shutdown()
    }

    var logs: String {
        (masters + joiners.withLock { $0 } + workers.withLock { $0 }).map { "== \($0.name)\n\($0.logTail)" }.joined(separator: "\n")
    }

    // MARK: REST

    struct Reply: Sendable {
        var status: Int
        var body: String
        var headers: [String: String]
        /// The body as sent (binary bodies do not survive `body`'s UTF-8 decoding).
        var bytes: [UInt8] = []
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) }
    }

    func request(_ method: HTTPMethod, master: Int, _ path: String, body: String? = nil, headers: [String: String] = [:],
                 timeout: TimeAmount = .seconds(15)) async throws -> Reply {
        var req = HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(apiPorts[master])\(path)")
        req.method = method
        for (name, value) in headers { req.headers.add(name: name, value: value) }
        if let body {
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(req, timeout: timeout)
        let data = try await response.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for h in response.headers { headers[h.name.lowercased()] = h.value }
        return Reply(status: Int(response.status.code), body: String(buffer: data), headers: headers, bytes: Array(buffer: data))
    }

    /// Polls `condition` until it holds or `timeout` passes.
    func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError.timeout(what)
    }

    /// The index of the master that leads, as `/api/v1/cluster` on a live master says.
    func leaderIndex(excluding dead: Set<Int> = []) async throws -> Int {
        var found: Int?
        try await waitUntil("a leader") {
            for i in 0..<masters.count where !dead.contains(i) {
                let r = try await request(.GET, master: i, "/api/v1/cluster")
                guard r.status == 200, let obj = r.json as? [String: Any], let leader = obj["leader_id"] as? String,
                      let index = Int(leader.dropFirst()).map({ $0 - 1 }), !dead.contains(index) else { continue }
                found = index
                return true
            }
            return false
        }
        return found!
    }

    /// Every task, across pages.
    func tasks(master: Int) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        var token: String?
        for _ in 0..<1000 {
            let path = "/api/v1/tasks?limit=500" + (token.map { "&continue=\($0)" } ?? "")
            let r = try await request(.GET, master: master, path)
            guard r.status == 200, let obj = r.json as? [String: Any] else { throw HarnessError.http(r.status, r.body) }
            all += (obj["tasks"] as? [[String: Any]]) ?? []
            token = obj["continue"] as? String
            if token == nil || token == "" { break }
        }
        return all
    }

    func nodes(master: Int) async throws -> [[String: Any]] {
        let r = try await request(.GET, master: master, "/api/v1/nodes")
        guard r.status == 200, let obj = r.json as? [String: Any] else { throw HarnessError.http(r.status, r.body) }
        return (obj["nodes"] as? [[String: Any]]) ?? []
    }
}

/// An ordinary (non-root) user for processes under test.
struct TestUser: Sendable {
    var name: String
    var uid: UInt32
    var gid: UInt32

    /// The system user `name`, created when this runs as root and it does not exist; nil when the
    /// tests do not run as root (then they already run as an ordinary user).
    static func ordinary(_ name: String = "orch-it") throws -> TestUser? {
        guard getuid() == 0 else { return nil }
        if getpwnam(name) == nil {
            let add = Process()
            add.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
            add.arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
            try add.run()
            add.waitUntilExit()
        }
        guard let entry = getpwnam(name) else { throw ClusterHarness.HarnessError.missingBinary("user \(name) (useradd failed)") }
        return TestUser(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Gives `path` to this user.
    func own(_ path: String) throws {
        guard chown(path, uid, gid) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
    }
}
