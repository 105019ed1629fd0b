import AsyncHTTPClient
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RaftTestSupport
import Testing
import TestGate

/// How a master that cannot start stops.
@Suite(.serialized, .heavy) struct MasterStartupTests {
    /// Regression: with its etcd port taken, a master used to die of SIGILL ("Deinited
    /// NIOAsyncWriter without calling finish()") instead of reporting the port, whenever a peer's
    /// HTTP/2 stream reached its rpc port in the moment between the failure and the exit: stopping
    /// the parts cancelled the gRPC server under open connections. Seen once in CI; before the fix
    /// this test crashed the master in most rounds.
    @Test("a master whose etcd port is taken exits with the error, never a crash, while clients open streams on its rpc port")
    func bindFailureUnderTraffic() async throws {
        guard let binary = RaftProcessCluster.locateBinary(named: "master") else {
            throw ClusterHarness.HarnessError.missingBinary("master")
        }
        let base = try PortBlock.reserve(offsets: [0, 1, 2])
        let (api, rpc, etcd) = (base, base + 1, base + 2)
        let holder = try ListeningSocket(port: etcd)
        defer { holder.close() }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-start-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        // Every call on a new connection, so HEADERS frames keep arriving while masters start and stop.
        let storm = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        while !Task.isCancelled { await Self.joinOnNewConnection(port: rpc) }
                    }
                }
            }
        }
        defer { storm.cancel() }

        for round in 0..<12 {
            let logPath = "\(root)/m\(round).log"
            let master = ManagedProcess(name: "m\(round)", binary: binary, arguments: [
                "--id", "m1", "--data-dir", "\(root)/m\(round)", "--api-addr", "127.0.0.1:\(api)",
                "--rpc-addr", "127.0.0.1:\(rpc)", "--etcd-addr", "127.0.0.1:\(etcd)", "--log-level", "info",
            ], logPath: logPath)
            try master.start()
            let deadline = ContinuousClock.now + .seconds(30)
            while master.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let termination = master.termination
            master.kill9()
            #expect(termination?.reason == .exit && termination?.status == 1,
                    "round \(round): \(String(describing: termination))\n\(master.logTail)")
            #expect(master.logTail.contains("Address already in use"), "round \(round): \(master.logTail)")
            #expect(master.logTail.contains("--etcd-addr 127.0.0.1:\(etcd)"), "the error names the flag: \(master.logTail)")
        }
    }

    /// The seed's own set-up starts an etcd on 2379 before the master: `--etcd-addr off` lets the
    /// master run beside it.
    @Test("with --etcd-addr off a master starts while another program holds its etcd port")
    func etcdAPIOff() async throws {
        guard let binary = RaftProcessCluster.locateBinary(named: "master") else {
            throw ClusterHarness.HarnessError.missingBinary("master")
        }
        let base = try PortBlock.reserve(offsets: [0, 1, 2])
        let holder = try ListeningSocket(port: base + 2)
        defer { holder.close() }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("orch-start-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let master = ManagedProcess(name: "m1", binary: binary, arguments: [
            "--id", "m1", "--data-dir", "\(root)/m1", "--api-addr", "127.0.0.1:\(base)", "--rpc-addr", "127.0.0.1:\(base + 1)",
            "--etcd-addr", "off", "--log-level", "info",
        ], logPath: "\(root)/m1.log")
        try master.start()
        defer { master.kill9() }
        let deadline = ContinuousClock.now + .seconds(30)
        var ready = false
        while !ready, master.isRunning, ContinuousClock.now < deadline {
            ready = (try? await Self.status(port: base, path: "/readyz")) == 200
            if !ready { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(ready, "\(master.logTail)")
        #expect(master.logTail.contains("etcd-api=off"), "\(master.logTail)")
    }

    static func status(port: Int, path: String) async throws -> Int {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(5))
        return Int(response.status.code)
    }

    /// One Join with a wrong token on a connection of its own; any outcome will do.
    static func joinOnNewConnection(port: Int) async {
        var options = CallOptions.defaults
        options.waitForReady = false
        options.timeout = .seconds(2)
        do {
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port),
                                                           transportSecurity: .plaintext)
            try await withGRPCClient(transport: transport) { client in
                var request = Orchestrator_V1_JoinRequest()
                request.joinToken = "wrong"
                _ = try await Orchestrator_V1_Workers.Client(wrapping: client).join(request, options: options)
            }
        } catch {
            // Refused while no master listens, permission denied while one does: both expected.
        }
    }
}

/// A TCP socket listening on 127.0.0.1, standing for another program that holds a port.
struct ListeningSocket {
    private let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let bound = LoopbackAddress.with(port: port) { bind(fd, $0, $1) }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else {
            throw HoldError(description: "could not hold port \(port): errno \(errno)")
        }
    }

    func close() { _ = Glibc.close(fd) }

    struct HoldError: Error, CustomStringConvertible {
        let description: String
    }
}
