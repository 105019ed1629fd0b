import EtcdAPITestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real 3-member etcd cluster (Debian's `/usr/bin/etcd`, 3.4) on free loopback ports, each
/// member with its own temporary data directory; stopped (SIGTERM, then SIGKILL) by `stop()`.
final class EtcdProcessCluster: @unchecked Sendable {
    // `Process` is not Sendable: the processes are only signalled and waited for after `run()`.
    let endpoints: [String]
    private let processes: [Process]
    private let directory: URL

    private init(endpoints: [String], processes: [Process], directory: URL) {
        self.endpoints = endpoints
        self.processes = processes
        self.directory = directory
    }

    static func start(binary: String = "/usr/bin/etcd", size: Int = 3) throws -> EtcdProcessCluster {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw LocalClusterError("etcd not found at \(binary) (apt-get install etcd-server)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var clientPorts: [Int] = [], peerPorts: [Int] = []
        for _ in 0..<size {
            clientPorts.append(try FreePort.find())
            peerPorts.append(try FreePort.find())
        }
        let initial = (0..<size).map { "e\($0)=http://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        var processes: [Process] = []
        for i in 0..<size {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            let client = "http://127.0.0.1:\(clientPorts[i])", peer = "http://127.0.0.1:\(peerPorts[i])"
            process.arguments = [
                "--name", "e\(i)", "--data-dir", directory.appendingPathComponent("e\(i)").path,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "etcd-bench", "--logger", "zap", "--log-level", "error",
            ]
            let log = directory.appendingPathComponent("e\(i).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            processes.append(process)
        }
        return EtcdProcessCluster(endpoints: clientPorts.map { "127.0.0.1:\($0)" }, processes: processes, directory: directory)
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
