// The bounded-store benchmark (issue 16): a cluster that runs many short tasks keeps the leader's
// memory and every master's data directory flat once the retention period has passed.
//
//   for p in bench master worker; do swift build -c release --scratch-path .build-rel --product $p; done
//   .build-rel/release/bench churn --tasks 1000000 --retention 120
//
// Three master processes (release, built-in store, loopback) with `--task-retention` short;
// simulated nodes join through the followers' worker protocol, each follows its assignment
// stream and reports every task it is given completed at once (nothing runs), so each task costs
// the cluster what a real short task costs it: the submission, the placement, the report, and
// later its deletion. Clients submit through the followers' REST API. Every `--sample` seconds a
// row: tasks submitted and completed so far, the rates in the interval, tasks stored, the
// leader's resident memory, and the largest master data directory. At the end a follower is
// replaced (killed, removed, a new empty master joins with --join) and its catch-up is timed.
import ArgumentParser
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RaftTestSupport
import Synchronization

struct ChurnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn",
        abstract: "Many short tasks through 3 masters: memory, data size and rates over time, then a follower replaced."
    )

    @Option(help: "Tasks to run through the cluster.") var tasks = 1_000_000
    @Option(help: "Simulated nodes (each completes every task it is given at once).") var nodes = 50
    @Option(help: "Concurrent REST clients submitting.") var clients = 32
    @Option(help: "The masters' --task-retention, in seconds.") var retention = 120
    @Option(help: "Seconds between samples.") var sample = 10
    @Option(help: "Extra flags for every master, space-separated (e.g. \"--snapshot-threshold 20000\").") var masterFlags = ""

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        guard let masterBinary = RaftProcessCluster.locateBinary(named: "master") else {
            FileHandle.standardError.write(Data("bench churn: build the master first (swift build -c release --product master)\n".utf8))
            throw ExitCode(2)
        }
        let masters = try Masters(binary: masterBinary, algorithm: "binpacking",
                                  extraArguments: ["--task-retention", "\(retention)"] + masterFlags.split(separator: " ").map(String.init),
                                  spare: 1)
        defer { masters.stop() }
        // A long run is often stopped by hand: the masters must not outlive it.
        let stops = ([SIGINT, SIGTERM] as [Int32]).map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler {
                masters.stop()
                Foundation.exit(130)
            }
            source.resume()
            return source
        }
        defer { stops.forEach { $0.cancel() } }
        var leader = -1
        try await waitFor("a leader and every master ready", timeout: .seconds(60)) {
            let (status, json) = try await get(masters.api[0], "/api/v1/cluster")
            guard status == 200, let name = json["leader_id"] as? String, let i = Int(name.dropFirst()) else { return false }
            for port in masters.api.prefix(3) where try await get(port, "/readyz").0 != 200 { return false }
            leader = i - 1
            return true
        }
        let followers = (0..<3).filter { $0 != leader }
        let completed = Counter(), submitted = Counter(), failed = Counter()
        let started = ContinuousClock.now
        print("bench churn: \(tasks) tasks, \(nodes) simulated nodes, \(clients) clients, retention \(retention) s; leader m\(leader + 1)")
        print("   t (s) | submitted | completed | submit/s | complete/s | stored | leader RSS MB | data MB (largest master)")

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The simulated nodes: join, then complete whatever they are assigned.
            for n in 0..<nodes {
                let port = masters.rpc[followers[n % followers.count]]
                group.addTask { try await Self.simulateNode("churn-\(n)", port: port, completed: completed) }
            }
            // The clients.
            let clientCount = clients, total = tasks
            for c in 0..<clients {
                let port = masters.api[followers[c % followers.count]]
                group.addTask {
                    var i = c
                    while i < total {
                        let status = (try? await post(port, "/api/v1/tasks",
                            #"{"name":"churn-\#(i)","image":"busybox","command":["true"],"resources":{"cpu":10,"memory":8}}"#)) ?? 0
                        if status == 201 { submitted.add() } else { failed.add() }
                        i += clientCount
                    }
                }
            }
            // The sampler, until every task completed (or nothing moves for 5 minutes).
            let leaderAPI = masters.api[leader], leaderPID = masters.processes[leader].processIdentifier
            let dataDirs = (0..<3).map { masters.dataDir($0) }
            let interval = sample
            group.addTask {
                var last = (submitted: 0, completed: 0, at: ContinuousClock.now)
                var stalledSince = ContinuousClock.now
                while true {
                    try await Task.sleep(for: .seconds(interval))
                    let now = ContinuousClock.now
                    let s = submitted.value, c = completed.value
                    let seconds = last.at.duration(to: now).inSeconds
                    let stored = (try? await Self.storedTasks(leaderAPI)) ?? -1
                    let data = dataDirs.map { Self.directoryMB($0) }.max() ?? 0
                    print(String(format: "%8.0f | %9d | %9d | %8.0f | %10.0f | %6d | %13.1f | %8.1f",
                                 started.duration(to: now).inSeconds, s, c, Double(s - last.submitted) / seconds,
                                 Double(c - last.completed) / seconds, stored, Masters.rssMB(pid: leaderPID), data))
                    if c != last.completed { stalledSince = now }
                    last = (s, c, now)
                    if c >= total - failed.value { break }
                    if stalledSince.duration(to: now) > .seconds(300) {
                        print("bench churn: nothing completed for 5 minutes; stopping")
                        break
                    }
                }
                throw CancellationError()  // ends the nodes and the group
            }
            do { try await group.waitForAll() } catch is CancellationError {}
            group.cancelAll()
        }
        print("submissions refused: \(failed.value)")
        try await Self.replaceFollower(masters, leader: leader, victim: followers[1])
        try? await http.shutdown()
    }

    /// Joins, then follows the assignment stream and reports each new assignment completed.
    static func simulateNode(_ id: String, port: Int, completed: Counter) async throws {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            let workers = Orchestrator_V1_Workers.Client(wrapping: client)
            let joined = try await workers.join(.with {
                $0.nodeID = id
                $0.address = "127.0.0.1:1"
                $0.cpuMillicores = 64_000
                $0.memoryMb = 1 << 20
            })
            let reported = Mutex(Set<String>())
            while !Task.isCancelled {
                do {
                    try await workers.assignments(.with {
                        $0.nodeID = id
                        $0.nodeCredential = joined.nodeCredential
                    }) { response in
                        for try await set in response.messages {
                            let done = reported.withLock { $0 }
                            let fresh = set.assignments.filter { !$0.stop && !done.contains("\($0.taskID)/\($0.epoch)") }
                            // Reported 16 at a time, as a worker's tasks end independently.
                            try await withThrowingTaskGroup(of: String.self) { group in
                                for (i, assignment) in fresh.enumerated() {
                                    if i >= 16, let key = try await group.next() { reported.withLock { _ = $0.insert(key) } }
                                    group.addTask {
                                        _ = try await workers.reportStatus(.with {
                                            $0.nodeID = id
                                            $0.nodeCredential = joined.nodeCredential
                                            $0.taskID = assignment.taskID
                                            $0.epoch = assignment.epoch
                                            $0.state = .completed
                                            $0.hasExitCode_p = true
                                            $0.exitCode = 0
                                        })
                                        completed.add()
                                        return "\(assignment.taskID)/\(assignment.epoch)"
                                    }
                                }
                                for try await key in group { reported.withLock { _ = $0.insert(key) } }
                            }
                            // Forget what is no longer assigned (completed tasks leave the set).
                            let current = Set(set.assignments.map { "\($0.taskID)/\($0.epoch)" })
                            reported.withLock { $0.formIntersection(current) }
                        }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }

    /// Tasks stored (every state), from the leader's metrics.
    static func storedTasks(_ port: Int) async throws -> Int {
        let text = try await getText(port, "/metrics")
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix("orchestrator_tasks{") {
            total += Double(line.split(separator: " ").last ?? "0") ?? 0
        }
        return Int(total)
    }

    /// Bytes under `path`, in MB.
    static func directoryMB(_ path: String) -> Double {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
        var bytes = 0
        while let item = walker.nextObject() as? String {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + item)
            if attributes?[.type] as? FileAttributeType == .typeRegular { bytes += (attributes?[.size] as? Int) ?? 0 }
        }
        return Double(bytes) / 1_048_576
    }

    /// Kills follower `victim`, removes it, starts a new empty master with --join, and times its
    /// catch-up: until it is a voter and its /readyz answers 200.
    static func replaceFollower(_ masters: Masters, leader: Int, victim: Int) async throws {
        masters.killMaster(victim)
        let (_, list) = try await get(masters.api[leader], "/api/v1/cluster/members")
        let members = list["members"] as? [[String: Any]] ?? []
        guard let id = members.first(where: { $0["name"] as? String == "m\(victim + 1)" })?["id"] as? Int else {
            print("replace: m\(victim + 1) not in the member list")
            return
        }
        _ = try await delete(masters.api[leader], "/api/v1/cluster/members/\(id)")
        let start = ContinuousClock.now
        try masters.startJoiner(index: 3, via: leader)
        try await waitFor("the new master a voter and ready", timeout: .seconds(600), interval: .milliseconds(100)) {
            let (_, list) = try await get(masters.api[leader], "/api/v1/cluster/members")
            let m4 = (list["members"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "m4" }
            guard m4?["learner"] as? Bool == false else { return false }
            return try await get(masters.api[3], "/readyz").0 == 200
        }
        let took = start.duration(to: .now).inSeconds
        let log = (try? String(contentsOfFile: masters.logPath(3), encoding: .utf8)) ?? ""
        let viaSnapshot = log.localizedCaseInsensitiveContains("snapshot")
        print(String(format: "replaced m%d by m4: voter and ready %.1f s after it started (%@), data %.1f MB, RSS %.1f MB",
                     victim + 1, took, viaSnapshot ? "its log mentions a snapshot" : "no snapshot in its log",
                     directoryMB(masters.dataDir(3)), masters.rssMB(3)))
    }
}
