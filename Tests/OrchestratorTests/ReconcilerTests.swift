import ClusterModel
import Raft
import Testing
@testable import Orchestrator

/// The self-healing rules with no store: node states from heartbeats, down-node handling, the
/// drain hand-off, the restart budget and its backoff.
@Suite struct ReconcilerTests {
    static func node(_ id: String, state: NodeState = .ready, lastHeartbeat: Int64) -> NodeRecord {
        NodeRecord(info: NodeInfo(id: id, state: state, capacity: Resources(cpu: 4000, memory: 8192)), address: "", lastHeartbeat: lastHeartbeat)
    }

    static func task(_ id: String, _ state: TaskState, on node: String? = nil, retries: Int = 0, exitCode: Int? = nil, reason: String = "",
                     policy: RestartPolicy = RestartPolicy()) -> TaskRecord {
        var t = TaskRecord(id: id, spec: TaskSpec(name: id, image: "alpine", restartPolicy: policy), state: state, now: 0)
        t.node = node
        t.retries = retries
        t.exitCode = exitCode
        t.reason = reason
        return t
    }

    struct NodeCase: Sendable, CustomTestStringConvertible {
        var stored: NodeState, recorded: Int64, heartbeat: Int64?, now: Int64, leaderSince: Int64
        var expected: ReconcileAction?
        var testDescription: String { "\(stored), recorded \(recorded), heartbeat \(heartbeat.map(String.init) ?? "none"), now \(now): \(String(describing: expected))" }
    }

    static let nodeCases: [NodeCase] = [
        NodeCase(stored: .ready, recorded: 100_000, heartbeat: nil, now: 104_999, leaderSince: 0, expected: nil),
        NodeCase(stored: .ready, recorded: 100_000, heartbeat: nil, now: 105_000, leaderSince: 0, expected: .markNode(id: "n1", state: .notReady)),
        // The heartbeat key is newer than the record: it counts.
        NodeCase(stored: .ready, recorded: 0, heartbeat: 100_000, now: 105_000, leaderSince: 0, expected: .markNode(id: "n1", state: .notReady)),
        NodeCase(stored: .notReady, recorded: 100_000, heartbeat: nil, now: 115_000, leaderSince: 0, expected: .markNode(id: "n1", state: .down)),
        NodeCase(stored: .down, recorded: 100_000, heartbeat: 120_000, now: 120_500, leaderSince: 0, expected: .markNode(id: "n1", state: .ready)),
        NodeCase(stored: .draining, recorded: 100_000, heartbeat: nil, now: 101_000, leaderSince: 0, expected: nil),
        // A new leader never saw the heartbeats that went to the old one: grace, not a mass death.
        NodeCase(stored: .ready, recorded: 0, heartbeat: nil, now: 1_000_000, leaderSince: 1_000_000, expected: nil),
    ]

    @Test("node states follow heartbeats, with a grace period after a leader change", arguments: nodeCases)
    func nodeStates(_ c: NodeCase) {
        let actions = Reconciler().plan(nodes: [Self.node("n1", state: c.stored, lastHeartbeat: c.recorded)],
                                        heartbeats: c.heartbeat.map { ["n1": $0] } ?? [:], tasks: [], now: c.now,
                                        leaderSince: c.leaderSince, jitter: { 0 })
        #expect(actions == (c.expected.map { [$0] } ?? []))
    }

    @Test("a down node's tasks are lost, then restarted by their policy with backoff; pending and ended tasks elsewhere stay")
    func downNode() {
        let nodes = [Self.node("n1", lastHeartbeat: 0), Self.node("n2", lastHeartbeat: 100_000)]
        let tasks = [Self.task("a", .running, on: "n1"), Self.task("b", .assigned, on: "n1", retries: 2),
                     Self.task("c", .running, on: "n2"), Self.task("d", .pending)]
        let actions = Reconciler().plan(nodes: nodes, heartbeats: [:], tasks: tasks, now: 100_000, leaderSince: 0, jitter: { 0 })
        #expect(actions == [
            .markNode(id: "n1", state: .down),
            .evacuate(taskID: "a", node: "n1", to: .lost, reason: "node n1 down"),
            .restart(taskID: "a", retry: 1, delay: 1000, reason: "node n1 down; restart 1 of 3"),
            .evacuate(taskID: "b", node: "n1", to: .lost, reason: "node n1 down"),
            // Third restart: 1,000 << 2 = 4,000 ms.
            .restart(taskID: "b", retry: 3, delay: 4000, reason: "node n1 down; restart 3 of 3"),
        ])
    }

    @Test("a draining node hands its tasks over with no restart counted")
    func drain() {
        let nodes = [Self.node("n1", state: .draining, lastHeartbeat: 100_000)]
        let tasks = [Self.task("a", .running, on: "n1", retries: 3), Self.task("b", .assigned, on: "n1")]
        let actions = Reconciler().plan(nodes: nodes, heartbeats: [:], tasks: tasks, now: 100_500, leaderSince: 0, jitter: { 0 })
        #expect(actions == [
            .evacuate(taskID: "a", node: "n1", to: .pending, reason: "node n1 draining; moving"),
            .evacuate(taskID: "b", node: "n1", to: .pending, reason: "node n1 draining; moving"),
        ])
    }

    struct EndingCase: Sendable, CustomTestStringConvertible {
        var task: TaskRecord, jitter: Double
        var expected: [ReconcileAction]
        var testDescription: String { "\(task.id)" }
    }

    static let endingCases: [EndingCase] = [
        EndingCase(task: task("failed-first", .failed, retries: 0, exitCode: 3), jitter: 0,
                   expected: [.restart(taskID: "failed-first", retry: 1, delay: 1000, reason: "failed with exit code 3; restart 1 of 3")]),
        // Jitter 0.5 takes off 0.5 x 25% of 2,000 = 250.
        EndingCase(task: task("failed-jitter", .failed, retries: 1, exitCode: 1), jitter: 0.5,
                   expected: [.restart(taskID: "failed-jitter", retry: 2, delay: 1750, reason: "failed with exit code 1; restart 2 of 3")]),
        EndingCase(task: task("budget-spent", .failed, retries: 3, exitCode: 1), jitter: 0, expected: []),
        EndingCase(task: task("completed-on-failure", .completed, exitCode: 0), jitter: 0, expected: []),
        EndingCase(task: task("completed-always", .completed, exitCode: 0, policy: RestartPolicy(condition: .always)), jitter: 0,
                   expected: [.restart(taskID: "completed-always", retry: 1, delay: 1000, reason: "completed with exit code 0; restart 1 of 3")]),
        EndingCase(task: task("never", .failed, exitCode: 1, policy: RestartPolicy(condition: .never)), jitter: 0, expected: []),
        // A lost task that stays lost says why, once.
        EndingCase(task: task("lost-never", .lost, reason: "node n1 down", policy: RestartPolicy(condition: .never)), jitter: 0,
                   expected: [.explain(taskID: "lost-never", reason: "node n1 down; restart policy never")]),
        EndingCase(task: task("lost-explained", .lost, reason: "node n1 down; restart policy never", policy: RestartPolicy(condition: .never)),
                   jitter: 0, expected: []),
        EndingCase(task: task("lost-budget", .lost, retries: 3, reason: "node n1 down"), jitter: 0,
                   expected: [.explain(taskID: "lost-budget", reason: "node n1 down; gave up after 3 restarts (max_retries 3)")]),
        EndingCase(task: task("cancelled", .cancelled, policy: RestartPolicy(condition: .always)), jitter: 0, expected: []),
    ]

    @Test("ended tasks: restart budget, backoff with jitter, and why a lost task stays lost", arguments: endingCases)
    func endings(_ c: EndingCase) {
        let actions = Reconciler().plan(nodes: [], heartbeats: [:], tasks: [c.task], now: 0, leaderSince: 0, jitter: { c.jitter })
        #expect(actions == c.expected)
    }

    @Test("the same inputs and seed give the same plan")
    func deterministic() {
        let tasks = (0..<50).map { Self.task("t\($0)", .failed, retries: $0 % 3, exitCode: 1) }
        func run() -> [ReconcileAction] {
            var random = SplitMix64(seed: 42)
            return Reconciler().plan(nodes: [], heartbeats: [:], tasks: tasks.shuffled(), now: 0, leaderSince: 0,
                                     jitter: { Double.random(in: 0..<1, using: &random) })
        }
        let first = run()
        #expect(first.count == 50)
        #expect(run() == first)
    }
}
