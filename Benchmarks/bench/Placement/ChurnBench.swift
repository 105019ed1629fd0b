// The bounded-store benchmark (issue 16): a cluster that runs many short tasks keeps the leader's
// memory and every master's data directory flat once the retention period has passed.
//
//   for p in bench master worker; do swift build -c release --scratch-path .build-rel --product $p; done
//   .build-rel/release/bench churn --tasks 1000000 --retention 120 --master-flags="--snapshot-threshold 20000"
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
    @Option(help: "Clients pause while this many submitted tasks are not yet reported completed (the steady state a cluster runs in; 0: no limit).") var window = 2_000
    @Option(help: "Reports each simulated node has in flight at once (a worker's reporter sends one at a time).") var reportsPerNode = 1
    @Option(help: "Each simulated node's CPU, in millicores (with 100 per task: 40 tasks at once per node).") var nodeCpu = 4_000
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
        let completed = Counter(), submitted = Counter(), failed = Counter(), reportErrors = Counter()
        let started = ContinuousClock.now
        say("bench churn: \(tasks) tasks, \(nodes) simulated nodes, \(clients) clients, retention \(retention) s; leader m\(leader + 1)")
        say("   t (s) | submitted | completed | submit/s | complete/s | stored | unfinished | leader RSS MB | data MB (largest master)")

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The simulated nodes: join, then complete whatever they are assigned.
            for n in 0..<nodes {
                let port = masters.rpc[followers[n % followers.count]]
                let cpu = nodeCpu, inFlight = max(1, reportsPerNode)
                group.addTask { try await Self.simulateNode("churn-\(n)", port: port, cpu: cpu, reportsInFlight: inFlight, completed: completed,
                                                         reportErrors: reportErrors) }
            }
            // The clients.
            let clientCount = clients, total = tasks, window = window
            for c in 0..<clients {
                let port = masters.api[followers[c % followers.count]]
                group.addTask {
                    var i = c
                    while i < total {
                        while window > 0 && submitted.value - completed.value >= window {
                            try await Task.sleep(for: .milliseconds(5))
                        }
                        let status = (try? await post(port, "/api/v1/tasks",
                            #"{"name":"churn-\#(i)","image":"busybox","command":["true"],"resources":{"cpu":100,"memory":64}}"#)) ?? 0
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
                    let states = (try? await Self.storedTasks(leaderAPI)) ?? [:]
                    let stored = states.isEmpty ? -1 : states.values.reduce(0, +)
                    let unfinished = ["pending", "assigned", "running", "lost"].map { states[$0] ?? 0 }.reduce(0, +)
                    let data = dataDirs.map { Self.directoryMB($0) }.max() ?? 0
                    say(String(format: "%8.0f | %9d | %9d | %8.0f | %10.0f | %6d | %10d | %13.1f | %8.1f",
                                 started.duration(to: now).inSeconds, s, c, Double(s - last.submitted) / seconds,
                                 Double(c - last.completed) / seconds, stored, unfinished, Masters.rssMB(pid: leaderPID), data))
                    if c == last.completed && unfinished > 0 {
                        let detail = states.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                        say("         nothing completed in the interval; stored by state: \(detail.joined(separator: ", "))")
                    }
                    if c != last.completed || unfinished > 0 { stalledSince = now }
                    last = (s, c, now)
                    // Done when every task was submitted (or refused) and none is left unfinished,
                    // as the leader counts them: a report whose answer was lost still completed its task.
                    if s + failed.value >= total && unfinished == 0 && stored >= 0 { break }
                    if stalledSince.duration(to: now) > .seconds(300) {
                        say("bench churn: nothing completed for 5 minutes; stopping")
                        break
                    }
                }
                throw CancellationError()  // ends the nodes and the group
            }
            // `waitForAll` would wait for every node too, which runs until cancelled: the first
            // child to end with an error (the sampler, when every task is done) ends them all.
            do {
                while try await group.next() != nil {}
            } catch is CancellationError {}
            group.cancelAll()
        }
        say("submissions refused: \(failed.value); report calls that failed and were sent again: \(reportErrors.value)")
        try await Self.replaceFollower(masters, leader: leader, victim: followers[1])
        try? await http.shutdown()
    }

    /// Joins, then follows the assignment stream and reports each new assignment completed.
    static func simulateNode(_ id: String, port: Int, cpu: Int, reportsInFlight: Int, completed: Counter,
                             reportErrors: Counter) async throws {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            let workers = Orchestrator_V1_Workers.Client(wrapping: client)
            let joined = try await workers.join(.with {
                $0.nodeID = id
                $0.address = "127.0.0.1:1"
                $0.cpuMillicores = Int64(cpu)
                $0.memoryMb = Int64(cpu) * 4
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
                            // `reportsInFlight` at a time: every report of a node rewrites its
                            // record, so more at once mostly conflict and retry.
                            try await withThrowingTaskGroup(of: String.self) { group in
                                for (i, assignment) in fresh.enumerated() {
                                    if i >= reportsInFlight, let key = try await group.next() { reported.withLock { _ = $0.insert(key) } }
                                    group.addTask {
                                        // Until acknowledged, as a worker's reporter does: a call
                                        // that failed may or may not have applied, and the report
                                        // is idempotent.
                                        for attempt in 1... {
                                            do {
                                                _ = try await workers.reportStatus(.with {
                                                    $0.nodeID = id
                                                    $0.nodeCredential = joined.nodeCredential
                                                    $0.taskID = assignment.taskID
                                                    $0.epoch = assignment.epoch
                                                    $0.state = .completed
                                                    $0.hasExitCode_p = true
                                                    $0.exitCode = 0
                                                })
                                                break
                                            } catch where attempt < 50 && !(error is CancellationError) {
                                                reportErrors.add()
                                                try await Task.sleep(for: .milliseconds(100))
                                            }
                                        }
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

    /// Tasks stored, by state, from the leader's metrics.
    static func storedTasks(_ port: Int) async throws -> [String: Int] {
        let text = try await getText(port, "/metrics")
        var byState: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("orchestrator_tasks{state=\"") {
            let state = line.dropFirst("orchestrator_tasks{state=\"".count).prefix { $0 != "\"" }
            byState[String(state)] = Int(Double(line.split(separator: " ").last ?? "0") ?? 0)
        }
        return byState
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
            say("replace: m\(victim + 1) not in the member list")
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
        // What the new master received, from its own counter (not its log's wording).
        let metrics = (try? await getText(masters.api[3], "/metrics")) ?? ""
        let snapshots = metrics.split(separator: "\n")
            .first { $0.hasPrefix("orchestrator_raft_snapshots_received_total") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
        say(String(format: "replaced m%d by m4: voter and ready %.1f s after it started, %.0f snapshot(s) received, data %.1f MB, RSS %.1f MB",
                     victim + 1, took, snapshots, directoryMB(masters.dataDir(3)), masters.rssMB(3)))
    }
}
