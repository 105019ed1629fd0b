// End-to-end benchmarks of a 3-master cluster (BENCHMARKS.md).
//
// Placement (issue 4): 1,000 simulated nodes join through the worker protocol, then 10,000 tasks
// are submitted through the REST API of the followers; we time how long until every task is
// assigned (committed placements per second), per scheduling algorithm, and read the leader's
// resident memory.
//
//   for p in bench master worker; do swift build -c release --product $p; done
//   .build/release/bench placement [--mode placement|backlog] [--nodes 1000] [--tasks 10000] [--clients 64] [--algorithms binpacking,spread,roundrobin]
//
// `--mode backlog` cordons every node while the tasks arrive, then uncordons them all and times
// the leader draining the pending backlog: placement alone, without REST ingestion racing it.
//
// Start latency (issue 5): one real worker (`--runtime docker` or `process`); 100 times, submit a
// task and poll until it runs; the worker reports how long its runtime took to create and start
// it, so the orchestrator's own share is the rest.
//
//   .build/release/bench placement --mode latency [--runtime docker] [--tasks 100]
//
// `--store etcd` runs the masters with `--store etcd` on a fresh single-member etcd per run.
//
// Scale (issue 19): `--list-probe` times `GET /api/v1/tasks?limit=500` on a follower, one request
// after another, while the tasks are being placed; `--replace-follower` then replaces a follower
// with an empty master (which catches up from a snapshot) and times it. For example:
//
//   .build-rel/release/bench placement --mode backlog --nodes 5000 --tasks 100000 --algorithms binpacking \
//       --list-probe --replace-follower --master-flags="--snapshot-threshold 20000"
import ArgumentParser
import AsyncHTTPClient
import BenchSupport
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOHTTP1
import RaftTestSupport

struct PlacementBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement",
        abstract: "Placements per second through 3 master processes, and submit-to-running latency."
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case placement, backlog, latency
    }

    @Option(help: "placement: tasks arrive while the nodes are open; backlog: the leader drains a backlog of pending tasks; latency: submit to running through one real worker.")
    var mode: Mode = .placement
    @Option(help: "Simulated nodes (placement, backlog).")
    var nodes = 1000
    @Option(help: "Tasks to submit (default: 10000; 100 with --mode latency).")
    var tasks: Int?
    @Option(help: "Concurrent REST clients (placement, backlog).")
    var clients = 64
    @Option(help: "Scheduling algorithms to measure, in turn, comma-separated (placement, backlog).")
    var algorithms = "binpacking,spread,roundrobin"
    @Option(help: "The worker's runtime (latency): docker or process.")
    var runtime = "docker"
    @Option(help: "raft: the built-in store; etcd: the masters on a fresh single-member etcd per run (placement, backlog).")
    var store = "raft"
    @Option(help: "The etcd binary for --store etcd.")
    var etcdBinary = "/usr/bin/etcd"
    @Flag(help: "Time GET /api/v1/tasks?limit=500 on a follower while the tasks are placed (placement, backlog).")
    var listProbe = false
    @Flag(help: "Once placed, replace a follower by an empty master and time its catch-up (placement, backlog).")
    var replaceFollower = false
    @Option(help: "Extra flags for every master, space-separated (e.g. \"--snapshot-threshold 20000\").")
    var masterFlags = ""

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        guard let masterBinary = RaftProcessCluster.locateBinary(named: "master") else {
            FileHandle.standardError.write(Data("bench placement: build the master first (swift build -c release --product master)\n".utf8))
            throw ExitCode(2)
        }
        guard store == "raft" || store == "etcd" else { throw ValidationError("--store must be raft or etcd") }
        if mode == .latency {
            do {
                print(try await Self.startLatency(masterBinary: masterBinary, runtime: runtime, count: tasks ?? 100))
            } catch {
                print("latency: failed: \(error)")
            }
        } else {
            for algorithm in algorithms.split(separator: ",").map(String.init) {
                do {
                    let options = Extras(listProbe: listProbe, replaceFollower: replaceFollower,
                                         masterFlags: masterFlags.split(separator: " ").map(String.init))
                    try await Self.measurePlacement(masterBinary: masterBinary, algorithm: algorithm, backlog: mode == .backlog,
                                                          nodeCount: nodes, taskCount: tasks ?? 10_000, clients: clients,
                                                          etcdBinary: store == "etcd" ? etcdBinary : nil, extras: options)
                } catch {
                    print("\(algorithm): failed: \(error)")
                }
            }
        }
        try? await http.shutdown()
    }

    /// Submit to running, `count` times, through one real worker with `runtime`.
    static func startLatency(masterBinary: URL, runtime: String, count: Int) async throws -> String {
        guard let workerBinary = RaftProcessCluster.locateBinary(named: "worker") else { throw NSError(domain: "bench placement: build the worker", code: 2) }
        let masters = try Masters(binary: masterBinary, algorithm: "binpacking")
        let worker = Process()
        worker.executableURL = workerBinary
        let workerDir = masters.root + "/w1"
        worker.arguments = ["--masters", masters.rpc.map { "127.0.0.1:\($0)" }.joined(separator: ","), "--runtime", runtime,
                            "--data-dir", workerDir, "--cpu", "100000", "--memory", "100000", "--listen-addr", "127.0.0.1:\(masters.rpc[0] + 50)"]
        FileManager.default.createFile(atPath: masters.root + "/w1.log", contents: nil)
        let log = FileHandle(forWritingAtPath: masters.root + "/w1.log")!
        worker.standardOutput = log
        worker.standardError = log
        try worker.run()
        defer {
            kill(worker.processIdentifier, SIGKILL)
            worker.waitUntilExit()
            if runtime == "docker", let owner = try? String(contentsOfFile: workerDir + "/node-id", encoding: .utf8) {
                // The tasks sleep; remove their containers rather than wait out their stop grace.
                let rm = Process()
                rm.executableURL = URL(fileURLWithPath: "/bin/sh")
                rm.arguments = ["-c", "docker rm -f $(docker ps -aq --filter label=orchestrator.owner=\(owner.trimmingCharacters(in: .whitespacesAndNewlines))) >/dev/null 2>&1"]
                try? rm.run()
                rm.waitUntilExit()
            }
            masters.stop()
        }
        let api = masters.api[0]
        try await waitFor("a ready worker", timeout: .seconds(60)) {
            let (status, json) = try await get(api, "/api/v1/nodes")
            return status == 200 && ((json["nodes"] as? [[String: Any]])?.first?["state"] as? String) == "ready"
        }
        var totals: [Double] = [], runtimeShares: [Double] = [], ours: [Double] = []
        for i in 0..<count {
            let began = ContinuousClock.now
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(api)/api/v1/tasks")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"name":"lat-\#(i)","image":"alpine","command":["sleep","600"],"resources":{"cpu":10,"memory":16}}"#))
            let response = try await http.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard let id = ((try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any])?["id"] as? String else {
                throw NSError(domain: "bench placement: POST answered \(response.status)", code: 3)
            }
            var runtimeMs = 0.0
            // Polled every 2 ms: the poll adds at most that (plus one local GET) to the measured time.
            try await waitFor("task \(id) running", timeout: .seconds(60), interval: .milliseconds(2)) {
                let (status, json) = try await get(api, "/api/v1/tasks/\(id)")
                guard status == 200, json["state"] as? String == "running" else { return false }
                runtimeMs = Double(json["runtime_start_ms"] as? Int ?? 0)
                return true
            }
            let total = began.duration(to: .now).inSeconds * 1000
            totals.append(total)
            runtimeShares.append(runtimeMs)
            ours.append(total - runtimeMs)
        }
        totals.sort(); runtimeShares.sort(); ours.sort()
        return String(format: "%@ runtime, %d tasks, POST to running: median %.1f ms, p99 %.1f ms | runtime create+start: median %.1f ms, p99 %.1f ms | orchestrator's share: median %.1f ms, p99 %.1f ms",
                      runtime as NSString, count, percentile(totals, 0.5), percentile(totals, 0.99), percentile(runtimeShares, 0.5), percentile(runtimeShares, 0.99),
                      percentile(ours, 0.5), percentile(ours, 0.99))
    }

    /// What a placement run measures besides placements (the scale run's extras).
    struct Extras {
        var listProbe = false
        var replaceFollower = false
        var masterFlags: [String] = []
    }

    /// The pending tasks `port`'s master counts, from its `/metrics` (a count it keeps; listing
    /// `?state=pending&limit=1` instead scanned every placed task ahead of the first pending one,
    /// 100 times a second: a cost on the leader that grows with the tasks placed).
    static func pendingTasks(_ port: Int) async throws -> Int {
        let text = try await getText(port, "/metrics")
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(#"orchestrator_tasks{state="pending"}"#) }),
              let value = Double(line.split(separator: " ").last ?? "") else { return -1 }
        return Int(value)
    }

    /// The list probe of a run: the client's view (`ListProbe`) and the master's own histogram of
    /// the same route, read before and after, so a slow answer can be told from a slow client.
    struct ProbeRun {
        var port: Int
        var client: ListProbe
        var serverBefore: [Double: Double]

        static func start(_ port: Int) async -> ProbeRun {
            ProbeRun(port: port, client: ListProbe(port: port), serverBefore: (try? await listBuckets(port)) ?? [:])
        }

        /// Stops the probe; the line's tail with both views.
        func finish() async -> String {
            let latencies = client.stop()
            let after = (try? await Self.listBuckets(port)) ?? [:]
            var line = " | GET ?limit=500 while placing"
            guard !latencies.isEmpty else { return line + ": no list answered" }
            line += String(format: ": %d requests, client p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                           latencies.count, percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.last ?? 0)
            // The master's histogram: cumulative counts by upper bound; the bound that holds 50% and 99%.
            let bounds = after.keys.sorted()
            let total = (after[.infinity] ?? 0) - (serverBefore[.infinity] ?? 0)
            if total > 0 {
                func bound(_ q: Double) -> String {
                    let b = bounds.first { (after[$0] ?? 0) - (serverBefore[$0] ?? 0) >= q * total } ?? .infinity
                    return b.isInfinite ? "> 10 s" : String(format: "<= %g ms", b * 1000)
                }
                line += ", server (to the response head) p50 \(bound(0.5)), p99 \(bound(0.99))"
            }
            return line
        }

        /// `orchestrator_http_request_duration_seconds` buckets of `GET /api/v1/tasks` on `port`.
        static func listBuckets(_ port: Int) async throws -> [Double: Double] {
            var buckets: [Double: Double] = [:]
            for line in try await getText(port, "/metrics").split(separator: "\n")
            where line.hasPrefix("orchestrator_http_request_duration_seconds_bucket{")
                && line.contains(#"route="/api/v1/tasks""#) && line.contains(#"method="GET""#) {
                guard let leStart = line.range(of: #"le=""#), let leEnd = line[leStart.upperBound...].firstIndex(of: "\""),
                      let count = Double(line.split(separator: " ").last ?? "") else { continue }
                let le = String(line[leStart.upperBound..<leEnd])
                buckets[le == "+Inf" ? .infinity : Double(le) ?? .infinity] = count
            }
            return buckets
        }
    }

    /// One placement run with `algorithm`, printed: nodes join, tasks arrive, and the time until every task
    /// is assigned (with `backlog`, until the leader drains a backlog of pending tasks). With
    /// `etcdBinary` the masters keep their state in an etcd started from it (`--store etcd`).
    static func measurePlacement(masterBinary: URL, algorithm: String, backlog: Bool,
                                 nodeCount: Int, taskCount: Int, clients: Int, etcdBinary: String? = nil,
                                 extras: Extras = Extras()) async throws {
        let masters = try Masters(binary: masterBinary, algorithm: algorithm, etcdBinary: etcdBinary,
                                  extraArguments: extras.masterFlags, spare: extras.replaceFollower ? 1 : 0)
        defer { masters.stop() }
        var leader = -1
        try await waitFor("a leader", timeout: .seconds(30)) {
            let (status, json) = try await get(masters.api[0], "/api/v1/cluster")
            guard status == 200, let name = json["leader_id"] as? String, let i = Int(name.dropFirst()) else { return false }
            leader = i - 1
            return true
        }
        let followers = (0..<3).filter { $0 != leader }
        let rpcPorts = masters.rpc, apiPorts = masters.api
        for port in apiPorts.prefix(3) {  // a spare address has no master yet
            try await waitFor("master on \(port) ready", timeout: .seconds(30)) { try await get(port, "/readyz").0 == 200 }
        }

        // 1,000 nodes join through the followers' worker protocol, 32 at a time.
        let joinStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for f in followers {
                group.addTask {
                    let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: rpcPorts[f]), transportSecurity: .plaintext)
                    try await withGRPCClient(transport: transport) { client in
                        let workers = Orchestrator_V1_Workers.Client(wrapping: client)
                        try await withThrowingTaskGroup(of: Void.self) { joins in
                            var next = f == followers[0] ? 0 : 1
                            var inflight = 0
                            while next < nodeCount {
                                if inflight == 16 { try await joins.next(); inflight -= 1 }
                                let n = next
                                joins.addTask {
                                    _ = try await workers.join(.with {
                                        $0.nodeID = String(format: "sim-%04d", n)
                                        $0.address = "127.0.0.1:1"
                                        $0.cpuMillicores = 4000
                                        $0.memoryMb = 8192
                                        $0.labels = ["rack": "r\(n % 10)"]
                                    })
                                }
                                inflight += 1
                                next += 2
                            }
                            try await joins.waitForAll()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let joinTime = joinStart.duration(to: .now).inSeconds
        // Backlog mode: every node cordoned while the tasks arrive, so they pile up pending; then all
        // are uncordoned and we time the leader draining the backlog (placement alone, without the
        // REST ingestion racing it). The uncordons are part of the measured time.
        let leaderAPI = apiPorts[leader]
        if backlog {
            try await concurrently(nodeCount, clients) { n in
                guard try await post(leaderAPI, "/api/v1/nodes/\(String(format: "sim-%04d", n))/cordon", "") == 200 else {
                    throw NSError(domain: "bench placement: cordon of node \(n) refused", code: 4)
                }
            }
        }

        // 10,000 tasks through the followers' REST API, `clients` at a time.
        let placingProbe = extras.listProbe && !backlog ? await ProbeRun.start(apiPorts[followers[0]]) : nil
        let submitStart = ContinuousClock.now
        let failures = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    var i = c
                    while i < taskCount {
                        let port = apiPorts[followers[i % followers.count]]
                        let status = try await post(port, "/api/v1/tasks",
                            #"{"name":"bench-\#(i)","image":"busybox","command":["true"],"resources":{"cpu":100,"memory":64}}"#)
                        if status != 201 { failures.add() }
                        i += clients
                    }
                }
            }
            try await group.waitForAll()
        }
        let submitTime = submitStart.duration(to: .now).inSeconds
        if backlog {
            let probe = extras.listProbe ? await ProbeRun.start(apiPorts[followers[0]]) : nil
            let drainStart = ContinuousClock.now
            try await concurrently(nodeCount, clients) { n in
                guard try await post(leaderAPI, "/api/v1/nodes/\(String(format: "sim-%04d", n))/uncordon", "") == 200 else {
                    throw NSError(domain: "bench placement: uncordon of node \(n) refused", code: 4)
                }
            }
            let uncordonTime = drainStart.duration(to: .now).inSeconds
            try await waitFor("every task assigned", timeout: .seconds(1800), interval: .milliseconds(10)) {
                try await Self.pendingTasks(leaderAPI) == 0
            }
            let drainTime = drainStart.duration(to: .now).inSeconds
            let line = algorithm.padding(toLength: 11, withPad: " ", startingAt: 0) + String(format: "backlog: %6d tasks submitted in %6.2f s (%7.0f/s, %d failed) onto %d cordoned nodes | uncordoned in %5.2f s | all assigned %6.2f s after the first uncordon: %7.0f placements/s | leader RSS %6.1f MB",
                          taskCount, submitTime, Double(taskCount) / submitTime, failures.value, nodeCount, uncordonTime, drainTime, Double(taskCount) / drainTime, masters.rssMB(leader))
            try await Self.finish(line, probe: probe, extras: extras, masters: masters, leader: leader, victim: followers[1])
            return
        }
        try await waitFor("every task assigned", timeout: .seconds(1800)) {
            try await Self.pendingTasks(leaderAPI) == 0
        }
        let placeTime = submitStart.duration(to: .now).inSeconds
        let rss = masters.rssMB(leader)
        let line = algorithm.padding(toLength: 11, withPad: " ", startingAt: 0) + String(format: "nodes %5d joined in %6.2f s | %6d tasks submitted in %6.2f s (%7.0f/s, %d failed) | all assigned after %6.2f s: %7.0f placements/s | leader RSS %6.1f MB",
                      nodeCount, joinTime, taskCount, submitTime, Double(taskCount) / submitTime, failures.value,
                      placeTime, Double(taskCount) / placeTime, rss)
        try await Self.finish(line, probe: placingProbe, extras: extras, masters: masters, leader: leader, victim: followers[1])
    }

    /// Prints a run's line with what its list probe saw, then replaces `victim` if asked to.
    private static func finish(_ line: String, probe: ProbeRun?, extras: Extras,
                               masters: Masters, leader: Int, victim: Int) async throws {
        if let probe {
            say(line + (await probe.finish()))
        } else {
            say(line)
        }
        if extras.replaceFollower { try await ChurnBench.replaceFollower(masters, leader: leader, victim: victim) }
    }
}
