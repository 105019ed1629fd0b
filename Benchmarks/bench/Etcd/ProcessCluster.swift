import ClusterSecurity
import EtcdAPITestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Three server processes on free loopback ports, each with its own temporary data directory and
/// log; stopped (SIGTERM, then SIGKILL) by `stop()`. Either a real etcd 3.4 (Debian's
/// `/usr/bin/etcd`) or our masters (the `master` binary of the same build), so both sides of the
/// benchmark run as three processes, one replica each, beside the load generator's process.
final class ProcessCluster: @unchecked Sendable {
    // `Process` is not Sendable: the processes are only signalled and waited for after `run()`.
    let endpoints: [String]
    private let processes: [Process]
    private let directory: URL

    private init(endpoints: [String], processes: [Process], directory: URL) {
        self.endpoints = endpoints
        self.processes = processes
        self.directory = directory
    }

    /// A real etcd cluster; with `tls`, clients and peers use TLS with client certificates
    /// (`--client-cert-auth`, `--peer-client-cert-auth`), member `eN` holding master `eN`'s
    /// certificate from that directory.
    static func etcd(binary: String = "/usr/bin/etcd", size: Int = 3, tls: TLSDirectory? = nil) throws -> ProcessCluster {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw LocalClusterError("etcd not found at \(binary) (apt-get install etcd-server)")
        }
        let (clientPorts, peerPorts) = (try (0..<size).map { _ in try FreePort.find() }, try (0..<size).map { _ in try FreePort.find() })
        let scheme = tls == nil ? "http" : "https"
        let initial = (0..<size).map { "e\($0)=\(scheme)://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        return try launch(binary: binary, name: "etcd", endpoints: clientPorts.map { "127.0.0.1:\($0)" }) { i, dir in
            let client = "\(scheme)://127.0.0.1:\(clientPorts[i])", peer = "\(scheme)://127.0.0.1:\(peerPorts[i])"
            var security: [String] = []
            if let tls, let identity = try? ClusterIdentity(role: .master, name: "e\(i)") {
                let (ca, cert, key) = (tls.caCertificate, tls.certificate(identity), tls.key(identity))
                security = ["--trusted-ca-file", ca, "--cert-file", cert, "--key-file", key, "--client-cert-auth",
                            "--peer-trusted-ca-file", ca, "--peer-cert-file", cert, "--peer-key-file", key, "--peer-client-cert-auth"]
            }
            return security + [
                "--name", "e\(i)", "--data-dir", dir.path,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "etcd-bench", "--logger", "zap", "--log-level", "error",
            ]
        }
    }

    /// Our masters with the built-in store, each serving the etcd API (`--etcd-addr`); with
    /// `tls`, master `mN` runs with its certificate from that directory (mutual TLS on the Raft
    /// port and a client certificate required on the etcd API).
    static func masters(binary: String, size: Int = 3, tls: TLSDirectory? = nil) throws -> ProcessCluster {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw LocalClusterError("master not found at \(binary): build it with `swift build -c release --product master`")
        }
        let ports = try (0..<size).map { _ in (api: try FreePort.find(), rpc: try FreePort.find(), etcd: try FreePort.find()) }
        let peers = (0..<size).map { "m\($0)=127.0.0.1:\(ports[$0].rpc)" }.joined(separator: ",")
        return try launch(binary: binary, name: "master", endpoints: ports.map { "127.0.0.1:\($0.etcd)" }) { i, dir in
            ["--id", "m\(i)", "--data-dir", dir.path, "--api-addr", "127.0.0.1:\(ports[i].api)",
             "--rpc-addr", "127.0.0.1:\(ports[i].rpc)", "--etcd-addr", "127.0.0.1:\(ports[i].etcd)",
             "--peers", peers, "--log-level", "warning"] + Self.tlsFlags(tls, master: "m\(i)")
        }
    }

    /// `--tls-ca --tls-cert --tls-key` for master `name`, or nothing without TLS.
    private static func tlsFlags(_ tls: TLSDirectory?, master name: String) -> [String] {
        guard let tls, let identity = try? ClusterIdentity(role: .master, name: name) else { return [] }
        return ["--tls-ca", tls.caCertificate, "--tls-cert", tls.certificate(identity), "--tls-key", tls.key(identity)]
    }

    private static func launch(binary: String, name: String, endpoints: [String],
                               arguments: (Int, URL) -> [String]) throws -> ProcessCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-bench-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var processes: [Process] = []
        for i in endpoints.indices {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments(i, directory.appendingPathComponent("\(name)\(i)"))
            let log = directory.appendingPathComponent("\(name)\(i).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            processes.append(process)
        }
        return ProcessCluster(endpoints: endpoints, processes: processes, directory: directory)
    }

    /// SIGTERM every member, SIGKILL those still running after 5 s, remove the data.
    func stop() async {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while processes.contains(where: \.isRunning) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in processes { process.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }
}
