import Foundation
import RaftTestSupport
import Synchronization
import EtcdBackend
import Store
#if canImport(Glibc)
import Glibc
#endif

/// A real single-member etcd (Debian's etcd-server, `/usr/bin/etcd`, 3.4) on free loopback ports
/// with its own temporary data directory, for the tests that need a real etcd (EtcdStore, NamespacedStore,
/// the leader's compaction of an external etcd).
///
/// Every instance is a fresh cluster at revision 1, so tests can check exact revisions and run in
/// parallel. Ports are chosen by the kernel (bind to port 0), never etcd's defaults 2379/2380, which
/// a packaged etcd service may already hold.
///
/// `@unchecked Sendable`: `Process` is not `Sendable`, but it is only read here (state queries,
/// the pid) after `run()`, and `stopped` serializes the one teardown.
public final class EtcdProcess: @unchecked Sendable {
    /// Why an etcd could not be started; the tests fail with it (CI installs etcd: a missing
    /// binary is a broken machine, not a reason to skip).
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `http://127.0.0.1:PORT`.
    public let clientURL: String
    public let dataDir: URL
    private let process: Process
    private let stopped = Mutex(false)

    /// The etcd binary: `$ETCD_BINARY`, else `/usr/bin/etcd`.
    public static var binary: String {
        ProcessInfo.processInfo.environment["ETCD_BINARY"] ?? "/usr/bin/etcd"
    }

    private init(clientURL: String, dataDir: URL, process: Process) {
        self.clientURL = clientURL
        self.dataDir = dataDir
        self.process = process
    }

    /// Starts etcd and returns once it serves reads. Retries with other ports when etcd exits at
    /// once (another process may take a port between our probe and etcd's bind).
    public static func start(binary: String = EtcdProcess.binary, progressNotifyInterval: String = "1s",
                      deadline: Duration = .seconds(30)) async throws -> EtcdProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw StartError(description: """
                etcd not found at \(binary): the EtcdStore tests need a real etcd 3.4 \
                (Debian: apt-get install etcd-server etcd-client; .ci/run installs it), \
                or set ETCD_BINARY
                """)
        }
        var failures: [String] = []
        for _ in 0..<3 {
            do {
                return try await launch(binary: binary, progressNotifyInterval: progressNotifyInterval, deadline: deadline)
            } catch let error as StartError {
                failures.append(error.description)
            }
        }
        throw StartError(description: "etcd did not start: " + failures.joined(separator: " | "))
    }

    private static func launch(binary: String, progressNotifyInterval: String, deadline: Duration) async throws -> EtcdProcess {
        let clientPort = try freePort()
        let peerPort = try freePort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let client = "http://127.0.0.1:\(clientPort)"
        let peer = "http://127.0.0.1:\(peerPort)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--name", "test",
            "--data-dir", dir.appendingPathComponent("data").path,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "test=\(peer)",
            "--initial-cluster-state", "new",
            "--logger", "zap", "--log-level", "warn",
            // Lets a test see a progress notification without waiting etcd's default 10 minutes.
            "--experimental-watch-progress-notify-interval", progressNotifyInterval,
        ]
        let logURL = dir.appendingPathComponent("etcd.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        let etcd = EtcdProcess(clientURL: client, dataDir: dir, process: process)

        // Ready means it answers a linearizable read over gRPC: that needs the client listener
        // and an elected leader, exactly what the tests need.
        let store = try EtcdStore(endpoints: [client], configuration: quickConfiguration)
        let until = ContinuousClock.now + deadline
        var ready = false
        while !ready && process.isRunning && ContinuousClock.now < until {
            ready = (try? await store.range(RangeRequest(key: [0]), consistency: .linearizable)) != nil
            if !ready { try? await Task.sleep(for: .milliseconds(50)) }
        }
        try? await store.shutdown()
        if ready { return etcd }
        let output = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        let why = process.isRunning ? "was not ready within \(deadline)" : "exited with status \(process.terminationStatus)"
        await etcd.stop()
        throw StartError(description: "etcd at \(client) \(why): \(output.suffix(2_000))")
    }

    /// Short timeouts: the endpoints are local, and a test should fail fast rather than hang.
    /// Not shorter than 5 s: with every suite running on two cores the client's event loop has
    /// been seen to take over a second to handle a loopback connect. Refused connections (the
    /// failover tests) still fail at once.
    public static var quickConfiguration: EtcdStore.Configuration {
        var c = EtcdStore.Configuration()
        c.requestTimeout = .seconds(5)
        return c
    }

    /// The store of a test: talks to this etcd.
    public func makeStore(extraEndpoints: [String] = []) throws -> EtcdStore {
        try EtcdStore(endpoints: extraEndpoints + [clientURL], configuration: Self.quickConfiguration)
    }

    /// Whether the etcd process still runs.
    public var isRunning: Bool { process.isRunning }

    /// SIGTERM, then SIGKILL after 5 s, then removes the data directory. Idempotent.
    public func stop() async {
        let first = stopped.withLock { wasStopped in
            defer { wasStopped = true }
            return !wasStopped
        }
        guard first else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)  // a suspended etcd would not act on SIGTERM
            kill(process.processIdentifier, SIGTERM)
            let until = ContinuousClock.now + .seconds(5)
            while process.isRunning && ContinuousClock.now < until {
                try? await Task.sleep(for: .milliseconds(20))
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dataDir)
    }

    /// Freezes etcd (SIGSTOP): its connections stay open but nothing answers.
    public func suspend() {
        if process.isRunning { kill(process.processIdentifier, SIGSTOP) }
    }

    /// Thaws a suspended etcd (SIGCONT).
    public func resume() {
        if process.isRunning { kill(process.processIdentifier, SIGCONT) }
    }

    /// Kills etcd at once (no clean shutdown), keeping the data directory for `stop()` to remove.
    public func kill9() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Runs `body` with a fresh etcd and a store connected to it, stopping both afterwards whether
    /// `body` throws or not.
    public static func with<T: Sendable>(_ body: (EtcdProcess, EtcdStore) async throws -> T) async throws -> T {
        let etcd = try await start()
        let store: EtcdStore
        do { store = try etcd.makeStore() } catch {
            await etcd.stop()
            throw error
        }
        do {
            let result = try await body(etcd, store)
            try? await store.shutdown()
            await etcd.stop()
            return result
        } catch {
            try? await store.shutdown()
            await etcd.stop()
            throw error
        }
    }

    /// A TCP port on 127.0.0.1 free right now, below the kernel's ephemeral range (`PortBlock`).
    public static func freePort() throws -> Int {
        try PortBlock.reserve(offsets: [0])
    }
}
