import Foundation
import Linearizability
import Raft
import Synchronization
import Testing

/// The fault suite's settings, from the environment.
///
/// - `ORCH_FAULT_SEED`: the seed of the workload and of the fault choices (random when unset; a
///   failing run prints it).
/// - `ORCH_FAULT_SECONDS`: how long each test's workload runs (default: the test's own, a few
///   seconds); faults repeat in cycles while it runs (the long profile, `scripts/fault-profile.sh`).
/// - `ORCH_FAULT_REPORT`: a file to which each run appends one line of results (the line is
///   printed in any case).
/// - `ORCH_FAULT_VERBOSE`: set, every run prints its fault schedule (a failure always does).
enum FaultProfile {
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["ORCH_FAULT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
    }

    static func duration(default fallback: Duration) -> Duration {
        ProcessInfo.processInfo.environment["ORCH_FAULT_SECONDS"].flatMap(Double.init).map { .milliseconds(Int($0 * 1000)) } ?? fallback
    }

    static var reportPath: String? { ProcessInfo.processInfo.environment["ORCH_FAULT_REPORT"] }

    /// The masters' Raft election timeout: `MasterConfig`'s defaults (10 ticks of 100 ms; a
    /// follower waits between 1 and 2 of them), which no flag changes.
    static let electionTimeout = Duration.seconds(1)
}

/// What a fault test did to the cluster, with times on the workload's clock: printed with any
/// failure, so that a run can be read (and replayed with its seed).
final class FaultSchedule: Sendable {
    private let events = Mutex<[String]>([])
    private let faultCount = Mutex(0)
    private let workload: RegisterWorkload

    init(workload: RegisterWorkload) { self.workload = workload }

    /// Something that happened (a fault, a heal, a leader found), stamped with the time.
    func note(_ text: String) {
        let t = Double(workload.now()) / 1e9
        events.withLock { $0.append(String(format: "t=%6.2f s  ", t) + text) }
    }

    /// A fault injected: noted, and counted.
    func fault(_ text: String) {
        faultCount.withLock { $0 += 1 }
        note(text)
    }

    var faults: Int { faultCount.withLock { $0 } }
    var text: String { events.withLock { $0.joined(separator: "\n") } }
}

/// One fault test in progress: the cluster, the workload, the schedule, and the seeded choices.
final class FaultRun: Sendable {
    let name: String
    let seed: UInt64
    let cluster: ClusterHarness
    let workload: RegisterWorkload
    let schedule: FaultSchedule
    let duration: Duration
    private let clock = ContinuousClock()
    private let end = Mutex<ContinuousClock.Instant?>(nil)
    private let random: Mutex<SplitMix64>

    init(name: String, seed: UInt64, cluster: ClusterHarness, duration: Duration) throws {
        self.name = name
        self.seed = seed
        self.cluster = cluster
        self.duration = duration
        workload = try RegisterWorkload(cluster: cluster, seed: seed)
        schedule = FaultSchedule(workload: workload)
        random = Mutex(SplitMix64(seed: seed ^ 0xFA17_FA17_FA17_FA17))
    }

    /// A seeded choice among `options`.
    func choose<T>(_ options: [T]) -> T {
        options[Int(random.withLock { $0.next() } % UInt64(options.count))]
    }

    /// Runs the workload for `duration` from now (`hasTime` counts from here).
    func startWorkload() -> Task<[WorkloadOperation], any Error> {
        end.withLock { $0 = clock.now + duration }
        return Task { [workload, duration] in try await workload.run(clients: 6, keys: 3, for: duration) }
    }

    /// Whether the workload still runs for at least `length`: a fault cycle that long fits.
    func hasTime(for length: Duration) -> Bool {
        guard let end = end.withLock({ $0 }) else { return false }
        return clock.now + length <= end
    }

    /// The master that leads now, as the masters not in `excluding` report it (one whose
    /// `/api/v1/cluster` names a leader that is not excluded), polled until `timeout`.
    func leader(excluding: Set<Int> = [], timeout: Duration = .seconds(15)) async throws -> Int {
        let deadline = clock.now + timeout
        while clock.now < deadline {
            for i in cluster.masters.indices where !excluding.contains(i) {
                guard let r = try? await cluster.request(.GET, master: i, "/api/v1/cluster", timeout: .seconds(1)),
                      r.status == 200, let obj = r.json as? [String: Any], let id = obj["leader_id"] as? String,
                      let index = Int(id.dropFirst()).map({ $0 - 1 }), cluster.masters.indices.contains(index),
                      !excluding.contains(index) else { continue }
                return index
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ClusterHarness.HarnessError.timeout("a leader among \(cluster.masters.indices.filter { !excluding.contains($0) }.map { "m\($0 + 1)" })")
    }

    /// SIGKILL to master `i`, then polls until it is gone.
    func kill(_ i: Int) async throws {
        let m = cluster.masters[i]
        m.signal(SIGKILL)
        let deadline = clock.now + .seconds(10)
        while m.isRunning {
            guard clock.now < deadline else { throw ClusterHarness.HarnessError.timeout("m\(i + 1) to die of SIGKILL") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The partitions a test made, for its checks.
    let partitions = Mutex<[Partition]>([])

    /// Master `isolated` could not reach a majority, `majority` could reach each other, from
    /// `from` to `to` (workload clock: `from` taken after the cut, `to` before the heal).
    struct Partition: Sendable {
        var isolated: Int
        var majority: Set<Int>
        var from: Int64
        var to: Int64
    }

    /// The checks of a partition of the leader from the majority: the majority acknowledged writes
    /// while it lasted, and the isolated master acknowledged none called after it began.
    static func partitionChecks(_ run: FaultRun, _ history: [WorkloadOperation]) -> [String] {
        var problems: [String] = []
        for p in run.partitions.withLock({ $0 }) {
            let during = history.filter { op in
                guard op.operation.call >= p.from else { return false }
                return (op.operation.returnTime ?? .max) <= p.to
            }
            let majority = during.filter { p.majority.contains($0.master) }
            let answeredWrites = majority.filter { $0.isWrite }
            run.schedule.note("during the partition of m\(p.isolated + 1): the majority answered \(majority.count) calls, "
                + "\(answeredWrites.count) of them writes (\(answeredWrites.filter(\.isAcknowledgedWrite).count) acknowledged); "
                + "m\(p.isolated + 1) answered \(during.count - majority.count)")
            // A few calls only: a third of the clients' calls go to the isolated master and hang
            // until their timeout (2 s), and the election takes one or two of the partition's 5 s.
            if !answeredWrites.contains(where: \.isAcknowledgedWrite) {
                problems.append("the majority \(p.majority.sorted().map { "m\($0 + 1)" }) acknowledged no write during the partition of m\(p.isolated + 1)")
            }
            let isolated = acknowledgedWrites(history, through: [p.isolated], from: p.from, to: p.to)
            if !isolated.isEmpty {
                problems.append("the isolated m\(p.isolated + 1) acknowledged writes it could not have committed:\n\(renderHistory(isolated.map(\.operation)))")
            }
        }
        return problems
    }

    /// Polls until master `i` answers `/readyz` with 200.
    func waitReady(_ i: Int, timeout: Duration = .seconds(30)) async throws {
        try await cluster.waitUntil("m\(i + 1) ready", timeout: timeout) {
            try await cluster.request(.GET, master: i, "/readyz", timeout: .seconds(1)).status == 200
        }
    }

    /// Writes (puts and compare-and-sets) acknowledged by the masters in `masters`, called at or
    /// after `from` and returned at or before `to` (workload clock, nanoseconds).
    static func acknowledgedWrites(_ history: [WorkloadOperation], through masters: Set<Int>, from: Int64, to: Int64) -> [WorkloadOperation] {
        history.filter { op in
            guard masters.contains(op.master), op.isAcknowledgedWrite, op.operation.call >= from,
                  let returned = op.operation.returnTime else { return false }
            return returned <= to
        }
    }
}

/// Runs one fault test of the register workload: a cluster of 3 masters (through the fault proxy
/// when `proxied`), 6 clients on 3 keys for the profile's duration with `faults` running beside
/// them, then every fault healed (proxy healed, stopped masters continued, dead ones restarted),
/// one linearizable read per key through every master, and the whole history checked.
///
/// - Parameters:
///   - faults: the fault schedule; runs while the workload does, and should leave time for the
///     cluster to recover before the workload ends (`FaultRun.hasTime(for:)`).
///   - checks: test-specific expectations on the history (before the final reads); each string
///     returned is a failure.
func runRegisterFaultTest(
    _ name: String, proxied: Bool = false, duration defaultDuration: Duration = .seconds(8), minCompleted: Int = 200,
    faults: @escaping @Sendable (FaultRun) async throws -> Void,
    checks: (FaultRun, [WorkloadOperation]) -> [String] = { _, _ in [] }
) async throws {
    let seed = FaultProfile.seed
    let duration = FaultProfile.duration(default: defaultDuration)
    let cluster = try ClusterHarness(masters: 3, proxied: proxied)
    defer { cluster.killAll() }
    let timed = try FaultRun(name: name, seed: seed, cluster: cluster, duration: duration)
    defer { Task { [workload = timed.workload] in await workload.close() } }
    try cluster.start()
    let first = try await timed.leader(timeout: .seconds(30))
    // Every master ready and its etcd API answering through the workload's own connections
    // before the clock starts: a connection tried before its master listened sits in gRPC's
    // reconnect backoff and fails calls at once, which would read as a fault.
    for i in cluster.masters.indices { try await timed.waitReady(i) }
    let (_, cold) = await timed.workload.finalReads(keys: 1, deadline: .now + .seconds(20))
    if !cold.isEmpty { throw ClusterHarness.HarnessError.timeout("a first read through \(cold.joined(separator: ", "))") }
    timed.schedule.note("cluster up, m\(first + 1) leads (seed \(seed), \(duration) of workload)")
    let started = ContinuousClock.now

    let workload = timed.startWorkload()
    let schedule = Task { try await faults(timed) }
    let history: [WorkloadOperation]
    var problems: [String] = []
    do {
        history = try await workload.value
        try await schedule.value
    } catch {
        schedule.cancel()
        // Heal before reporting, so the logs show the cluster's last state, not a stopped master.
        cluster.proxy?.heal()
        for m in cluster.masters { m.signal(SIGCONT) }
        Issue.record("\(name), seed \(seed) (replay with ORCH_FAULT_SEED=\(seed)): \(error)\nschedule:\n\(timed.schedule.text)\n\(cluster.logs)")
        return
    }

    // Heal everything; every master must be up and answer.
    if let proxy = cluster.proxy {
        let closed = proxy.heal()
        if !proxy.discardedBytes.isEmpty || closed > 0 {
            timed.schedule.note("healed at the end (\(closed) connections that lost bytes closed)")
        }
    }
    for (i, m) in cluster.masters.enumerated() {
        m.signal(SIGCONT)
        if !m.isRunning {
            timed.schedule.note("m\(i + 1) was not running at the end: restarted")
            try m.start()
        }
    }
    for i in cluster.masters.indices {
        do { try await timed.waitReady(i) } catch { problems.append("m\(i + 1) not ready after healing: \(error)") }
    }
    problems += checks(timed, history)
    let (finals, unanswered) = await timed.workload.finalReads(keys: 3, deadline: .now + .seconds(20))
    if !unanswered.isEmpty { problems.append("no linearizable read answered after healing through: \(unanswered.joined(separator: ", "))") }
    timed.schedule.note("final reads: \(finals.count) answered")

    let all = (history + finals).map(\.operation)
    let report = KeyValueLinearizabilityChecker().check(all)
    let completed = history.filter { !$0.operation.timedOut }.count
    if completed < minCompleted { problems.append("only \(completed) operations completed (at least \(minCompleted) expected)") }
    let wall = (ContinuousClock.now - started).components
    let line = "fault-run test=\(name) seed=\(seed) seconds=\(duration.components.seconds) faults=\(timed.schedule.faults) "
        + "operations=\(report.operationsChecked) completed=\(completed) timedout=\(history.count - completed) "
        + "timedout_by_master=\(cluster.masters.indices.map { i in "m\(i + 1):\(history.filter { $0.master == i && $0.operation.timedOut }.count)" }.joined(separator: ",")) "
        + "violations=\(report.violations.count) verdict=\(report.verdict) problems=\(problems.count) "
        + "wall=\(String(format: "%.1f", Double(wall.seconds) + Double(wall.attoseconds) / 1e18))s"
    print(line)
    if ProcessInfo.processInfo.environment["ORCH_FAULT_VERBOSE"] != nil { print(timed.schedule.text) }
    if let path = FaultProfile.reportPath {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        if let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(Data((line + "\n").utf8))
            try? handle.close()
        }
    }
    if report.verdict != .linearizable {
        // The summary has each violation with its smallest failing history; the histories name
        // clients, so say which master each of those calls went to.
        let masterOf = Dictionary((history + finals).map { ("\($0.operation.client)@\($0.operation.call)", $0.master) }, uniquingKeysWith: { a, _ in a })
        let routes = report.violations.flatMap(\.smallestFailingHistory).map { op in
            "client \(op.client) call \(op.call) went to m\((masterOf["\(op.client)@\(op.call)"] ?? -1) + 1)"
        }
        problems.append(report.summary + (routes.isEmpty ? "" : "\n" + routes.joined(separator: "\n")))
    }
    if problems.isEmpty {
        // Passed: nothing to read later (the long profile makes hundreds of these).
        cluster.killAll()
        try? FileManager.default.removeItem(atPath: cluster.root)
    } else {
        Issue.record("""
            \(name), seed \(seed) (replay with ORCH_FAULT_SEED=\(seed)), \(report.operationsChecked) operations checked:
            \(problems.joined(separator: "\n"))
            schedule:
            \(timed.schedule.text)
            \(cluster.logs)
            """)
    }
}
