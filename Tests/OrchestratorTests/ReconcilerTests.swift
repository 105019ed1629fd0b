import ClusterModel
import Raft
import Testing
@testable import Orchestrator

/// The self-healing rules with no store: node states from observed silences, down-node handling, the
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
        var stored: NodeState, silence: Int64?
        var expected: ReconcileAction?
        var testDescription: String { "\(stored), silent \(silence.map { "\($0) ms" } ?? "unknown"): \(String(describing: expected))" }
    }

    static let nodeCases: [NodeCase] = [
        NodeCase(stored: .ready, silence: 4_999, expected: nil),
        NodeCase(stored: .ready, silence: 5_000, expected: .markNode(id: "n1", state: .notReady)),
        NodeCase(stored: .notReady, silence: 15_000, expected: .markNode(id: "n1", state: .down)),
        NodeCase(stored: .down, silence: 0, expected: .markNode(id: "n1", state: .ready)),
        NodeCase(stored: .draining, silence: 1_000, expected: nil),
        NodeCase(stored: .draining, silence: 15_000, expected: .markNode(id: "n1", state: .down)),
        // Not observed yet (a new leader's first pass): just heard from, not a mass death.
        NodeCase(stored: .ready, silence: nil, expected: nil),
    ]

    @Test("node states follow the silence the leader observed", arguments: nodeCases)
    func nodeStates(_ c: NodeCase) {
        let actions = Reconciler().plan(nodes: [Self.node("n1", state: c.stored, lastHeartbeat: 0)],
                                        silences: c.silence.map { ["n1": $0] } ?? [:], tasks: [], jitter: { 0 })
        #expect(actions == (c.expected.map { [$0] } ?? []))
    }

    @Test("a down node's tasks are lost, then restarted by their policy with backoff; pending and ended tasks elsewhere stay")
    func downNode() {
        let nodes = [Self.node("n1", lastHeartbeat: 0), Self.node("n2", lastHeartbeat: 100_000)]
        let tasks = [Self.task("a", .running, on: "n1"), Self.task("b", .assigned, on: "n1", retries: 2),
                     Self.task("c", .running, on: "n2"), Self.task("d", .pending)]
        let actions = Reconciler().plan(nodes: nodes, silences: ["n1": 100_000, "n2": 0], tasks: tasks, jitter: { 0 })
        #expect(actions == [
            .markNode(id: "n1", state: .down),
            .evacuate(taskID: "a", node: "n1", to: .lost, reason: "node n1 down"),
            .restart(taskID: "a", retry: 1, delay: 1000, reason: "node n1 down; restart 1 of 3"),
            .evacuate(taskID: "b", node: "n1", to: .lost, reason: "node n1 down"),
            // Third restart: 1,000 << 2 = 4,000 ms.
            .restart(taskID: "b", retry: 3, delay: 4000, reason: "node n1 down; restart 3 of 3"),
        ])
    }

    @Test("actions come in id order whatever order nodes and tasks are read in; jitter is drawn per restart, in that order")
    func orderAndJitter() {
        let nodes = [Self.node("n3", lastHeartbeat: 0), Self.node("n1", lastHeartbeat: 0), Self.node("n2", lastHeartbeat: 0)]
        let tasks = [Self.task("t5", .failed), Self.task("t2", .pending), Self.task("t4", .running, on: "n2"),
                     Self.task("t1", .completed, exitCode: 1, policy: RestartPolicy(condition: .always)),
                     Self.task("t3", .running, on: "n3"), Self.task("t0", .cancelled)]
        var draws = [0.0, 0.5, 0.99][...]
        let actions = Reconciler().plan(nodes: nodes, silences: ["n1": 100_000, "n2": 0, "n3": 100_000], tasks: tasks,
                                        jitter: { draws.popFirst() ?? 0 })
        // Backoff 1,000 ms less a quarter times the jitter: draws 0, 0.5 and 0.99 give 1,000, 875 and 753.
        #expect(actions == [
            .markNode(id: "n1", state: .down),
            .markNode(id: "n3", state: .down),
            .restart(taskID: "t1", retry: 1, delay: 1000, reason: "completed with exit code 1; restart 1 of 3"),
            .evacuate(taskID: "t3", node: "n3", to: .lost, reason: "node n3 down"),
            .restart(taskID: "t3", retry: 1, delay: 875, reason: "node n3 down; restart 1 of 3"),
            .restart(taskID: "t5", retry: 1, delay: 753, reason: "failed; restart 1 of 3"),
        ])
    }

    @Test("a draining node's tasks are asked to stop first, once; they move with no restart counted only when the stop is confirmed")
    func drain() {
        var moving = Self.task("c", .running, on: "n1")
        moving.moving = "node n1 draining"
        let nodes = [Self.node("n1", state: .draining, lastHeartbeat: 100_000)]
        let tasks = [Self.task("a", .running, on: "n1", retries: 3), Self.task("b", .assigned, on: "n1"), moving]
        let actions = Reconciler().plan(nodes: nodes, silences: ["n1": 500], tasks: tasks, jitter: { 0 })
        #expect(actions == [
            .requestMove(taskID: "a", node: "n1", reason: "node n1 draining"),
            .requestMove(taskID: "b", node: "n1", reason: "node n1 draining"),
        ])
    }

    @Test("a task moving off a node that goes down is pending again, not lost: its worker fenced itself")
    func movingOnDownNode() {
        var moving = Self.task("a", .running, on: "n1", policy: RestartPolicy(condition: .never))
        moving.moving = "node n1 draining"
        let actions = Reconciler().plan(nodes: [Self.node("n1", state: .draining, lastHeartbeat: 0)], silences: ["n1": 15_000],
                                        tasks: [moving], jitter: { 0 })
        #expect(actions == [
            .markNode(id: "n1", state: .down),
            .evacuate(taskID: "a", node: "n1", to: .pending, reason: "node n1 down while moving"),
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
        let actions = Reconciler().plan(nodes: [], silences: [:], tasks: [c.task], jitter: { c.jitter })
        #expect(actions == c.expected)
    }

    @Test("the same inputs and seed give the same plan")
    func deterministic() {
        let tasks = (0..<50).map { Self.task("t\($0)", .failed, retries: $0 % 3, exitCode: 1) }
        func run() -> [ReconcileAction] {
            var random = SplitMix64(seed: 42)
            return Reconciler().plan(nodes: [], silences: [:], tasks: tasks.shuffled(), jitter: { Double.random(in: 0..<1, using: &random) })
        }
        let first = run()
        #expect(first.count == 50)
        #expect(run() == first)
    }
}
