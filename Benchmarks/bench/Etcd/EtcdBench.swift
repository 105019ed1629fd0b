// bench etcd: the same etcd v3 workload against a real 3-member etcd and our 3-replica built-in
// store, side by side (BENCHMARKS.md).
//
//   bench etcd [--runs 3] [--seconds 5] [--paths spread leader follower] [--ours HOST:PORT,... | --in-process]
//              [--no-check-perf] [--tls]
//
// Each path is a table: clients spread over all three members (the default of etcd's clients and
// of its benchmark tool given every endpoint), every client on the leader, every client on one
// follower.
//
// Ours is, by default, three `master` processes of the same build (the binary next to this one),
// one replica each, like etcd's three members; `--in-process` runs the three replicas inside the
// bench's own process instead, and `--ours` measures endpoints already running. (`local-etcd`
// serves our 3-replica cluster alone, for the etcd API tests.)
//
// Both are driven over gRPC by the same grpc-swift load generator. Talking to a grpc-go server
// (etcd) from swift-nio-http2 used to fail after ~200 calls per connection (etcd probes bandwidth
// with PINGs); the client installs `HTTP2PingResponder`, as our server does, so gRPC works both
// ways and no HTTP/JSON gateway is needed.
//
// `--tls` runs both sides the way a secured cluster runs: etcd with `--client-cert-auth` and peer
// TLS, our masters with `--tls-*` (mutual TLS between them, a client certificate required on the
// etcd API), and the load generator presenting a client certificate to both, all from one CA
// written by `TLSInit` (what `master tls init` does).
import ArgumentParser
import BenchSupport
import ClusterSecurity
import EtcdAPI
import EtcdAPITestSupport
import Foundation
import Logging

struct EtcdBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd",
        abstract: "The etcd v3 API of our masters against a real 3-member etcd, same workload."
    )

    @Option(help: "Runs per scenario; the median is reported.")
    var runs = 3
    @Option(help: "Seconds measured per scenario and run (after 1 s of warm-up).")
    var seconds = 5
    @Option(help: "Measure these endpoints of ours (HOST:PORT,...) instead of starting masters.")
    var ours: String?
    @Flag(help: "Run our three replicas inside this process instead of as `master` processes.")
    var inProcess = false
    @Flag(inversion: .prefixedNo, help: "Finish with `etcdctl check perf --load=s` on both (60 s each).")
    var checkPerf = true
    @Option(help: "Only this side (etcd or ours), for profiling one of them.")
    var only: String?
    @Option(help: "Only the scenarios whose name contains this (e.g. \"put, 64\").")
    var scenario: String?
    @Flag(help: "Both clusters and the clients with mutual TLS (not with --ours or --in-process).")
    var tls = false
    @Option(parsing: .upToNextOption,
            help: "Which members the clients talk to: spread (over all three), leader, follower; one table each.")
    var paths: [EndpointPath] = EndpointPath.allCases

    func validate() throws {
        if tls && (ours != nil || inProcess) { throw ValidationError("--tls starts both clusters itself: drop --ours and --in-process") }
    }

    func run() async throws {
        let runs = max(1, runs), seconds = max(1, seconds)
        let only: Set<String> = only.map { [$0] } ?? ["etcd", "ours"]
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }

        let material = try tls ? BenchTLS.make() : nil
        defer { if let material { try? FileManager.default.removeItem(atPath: material.directory.path) } }
        let security = material?.client.grpcClientSecurity() ?? .plaintext
        say("starting a 3-member etcd (/usr/bin/etcd) and our 3-master cluster on loopback\(tls ? ", mutual TLS everywhere" : "")…")
        let etcd = try ProcessCluster.etcd(tls: material?.directory)
        var local: LocalEtcdCluster?
        var masters: ProcessCluster?
        do {
            let oursEndpoints: [String]
            if let ours {
                oursEndpoints = ours.split(separator: ",").map(String.init)
            } else if inProcess {
                let cluster = try await LocalEtcdCluster.start()
                local = cluster
                oursEndpoints = cluster.endpoints
            } else {
                let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
                let cluster = try ProcessCluster.masters(binary: here.appendingPathComponent("master").path, tls: material?.directory)
                masters = cluster
                oursEndpoints = cluster.endpoints
            }
            let etcdLeader = try await Workload.leaderEndpoint(etcd.endpoints, security: security)
            let oursLeader = try await Workload.leaderEndpoint(oursEndpoints, security: security)
            let names = ["etcd", "ours"], all = [etcd.endpoints, oursEndpoints], leaders = [etcdLeader, oursLeader]
            for (t, name) in names.enumerated() where only.contains(name) {
                let filler = try Workload(name: name, endpoints: [leaders[t]], connectionCount: 1, security: security)
                try await filler.prepare()
                await filler.close()
            }

            // results[path][scenario][target] = one Measurement per run
            let empty = Array(repeating: Array(repeating: [Measurement](), count: names.count), count: Scenario.all.count)
            var results = Array(repeating: empty, count: paths.count)
            for run in 1...runs {
                for (p, path) in paths.enumerated() {
                    let targets = try names.indices.map { t in
                        try Workload(name: names[t], endpoints: path.endpoints(all: all[t], leader: leaders[t]), security: security)
                    }
                    for (s, scenario) in Scenario.all.enumerated() where self.scenario.map(scenario.name.contains) ?? true {
                        for (t, target) in targets.enumerated() where only.contains(target.name) {
                            let m = try await target.run(scenario, duration: .seconds(seconds))
                            results[p][s][t].append(m)
                            say("run \(run) \(path) \(target.name) \(scenario.name): \(Int(m.throughput))/s p50 \(fmt(m.p50)) ms p99 \(fmt(m.p99)) ms errors \(m.errors)")
                        }
                    }
                    for target in targets { await target.close() }
                }
            }

            for (p, path) in paths.enumerated() {
                say("\nmedians of \(runs) runs, \(seconds) s each (after 1 s warm-up), 256-byte values, \(path.caption)\(tls ? ", mutual TLS" : ""):\n")
                say("| scenario | etcd ops/s | etcd p50 ms | etcd p99 ms | ours ops/s | ours p50 ms | ours p99 ms | ours/etcd ops/s | ours/etcd p99 |")
                say("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for (s, scenario) in Scenario.all.enumerated() {
                    let e = results[p][s][0], o = results[p][s][1]
                    if e.isEmpty || o.isEmpty { continue }
                    let (et, ep50, ep99) = (median(e.map(\.throughput)), median(e.map(\.p50)), median(e.map(\.p99)))
                    let (ot, op50, op99) = (median(o.map(\.throughput)), median(o.map(\.p50)), median(o.map(\.p99)))
                    let errors = (e + o).map(\.errors).reduce(0, +)
                    say("| \(scenario.name) | \(Int(et)) | \(fmt(ep50)) | \(fmt(ep99)) | \(Int(ot)) | \(fmt(op50)) | \(fmt(op99)) | \(fmt(ot / max(et, 1))) | \(fmt(op99 / max(ep99, 0.001))) |"
                        + (errors > 0 ? " (\(errors) errors)" : ""))
                }
            }

            if checkPerf {
                say("\netcdctl check perf --load=s (60 s each):")
                if only.contains("etcd") { say("etcd: \(await Self.checkPerf(etcd.endpoints, tls: material))") }
                if only.contains("ours") { say("ours: \(await Self.checkPerf(oursEndpoints, tls: material))") }
            }
        } catch {
            say("bench etcd failed: \(error)")
            await local?.shutdown()
            await masters?.stop()
            await etcd.stop()
            throw ExitCode(1)
        }
        await local?.shutdown()
        await masters?.stop()
        await etcd.stop()
    }

    /// Runs `etcdctl check perf --load=s` against `endpoints` and returns its verdict lines.
    static func checkPerf(_ endpoints: [String], tls: BenchTLS?) async -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = ["--endpoints=" + endpoints.joined(separator: ","), "check", "perf", "--load=s"]
        process.arguments! += tls?.etcdctlFlags ?? []
        process.environment = ProcessInfo.processInfo.environment.merging(["ETCDCTL_API": "3"]) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return "could not run etcdctl: \(error)" }
        // check perf runs 60 s; its output is small, so reading to the end does not block it.
        let data = (try? pipe.fileHandleForReading.readToEnd()) ?? Data()
        process.waitUntilExit()
        // Its verdict lines, without the progress bar (redrawn with carriage returns).
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").filter { !$0.contains("\r") }
        return lines.joined(separator: "; ")
    }
}

extension EndpointPath {
    /// How a table's heading names this path.
    var caption: String {
        switch self {
        case .spread: "clients spread over all three members"
        case .leader: "every client on the leader"
        case .follower: "every client on one follower"
        }
    }
}

/// Prints a line unbuffered, so a long run shows progress even into a file or pipe.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// `value` with `digits` decimals.
func fmt(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

/// The TLS material of `bench etcd --tls`: one CA, certificates for our masters m0-m2 and etcd's
/// members e0-e2 (master certificates carry 127.0.0.1), and the load generator's client
/// certificate, in a fresh temporary directory.
struct BenchTLS {
    let directory: TLSDirectory
    let clientIdentity: ClusterIdentity
    /// The load generator's material: it presents its client certificate to both clusters.
    let client: TLSMaterial

    static func make() throws -> BenchTLS {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bench-etcd-tls-\(UUID().uuidString)").path
        let clientIdentity = try ClusterIdentity(role: .client, name: "bench")
        let members = try (0..<3).flatMap { i in
            [CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m\(i)")),
             CertificateRequest(identity: try ClusterIdentity(role: .master, name: "e\(i)"))]
        }
        _ = try TLSInit(directory: path, requests: members + [CertificateRequest(identity: clientIdentity)]).run()
        let directory = TLSDirectory(path: path)
        let client = try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(clientIdentity),
                                     keyFile: directory.key(clientIdentity))
        return BenchTLS(directory: directory, clientIdentity: clientIdentity, client: client)
    }

    /// `etcdctl`'s flags for the same client certificate.
    var etcdctlFlags: [String] {
        ["--cacert", directory.caCertificate, "--cert", directory.certificate(clientIdentity), "--key", directory.key(clientIdentity)]
    }
}
