import ClusterModel
import Foundation
import Store
import Testing
@testable import Orchestrator

@Suite struct EventTranslatorTests {
    static func kv(_ key: [UInt8], _ value: [UInt8], revision: Int64) -> KeyValue {
        KeyValue(key: key, createRevision: 1, modRevision: revision, version: 1, value: value, lease: 0)
    }

    static func task(_ state: TaskState, epoch: UInt64 = 0) -> TaskRecord {
        var t = TaskRecord(id: "t1", spec: TaskSpec(name: "n", image: "alpine"), now: 0)
        t.state = state
        t.epoch = epoch
        return t
    }

    static func node(_ state: NodeState, schedulable: Bool = true) -> NodeRecord {
        NodeRecord(info: NodeInfo(id: "n1", state: state, schedulable: schedulable, capacity: Resources(cpu: 1000, memory: 1000)),
                   address: "a", lastHeartbeat: 0)
    }

    static func change(_ key: [UInt8], old: (some Encodable)?, new: (some Encodable)?, revision: Int64 = 7) -> WatchEvent {
        let prev = old.map { kv(key, ClusterRepository.encode($0), revision: revision - 1) }
        if let new {
            return WatchEvent(kind: .put, kv: kv(key, ClusterRepository.encode(new), revision: revision), prevKV: prev)
        }
        return WatchEvent(kind: .delete, kv: KeyValue(key: key, createRevision: 0, modRevision: revision, version: 0, value: [], lease: 0),
                          prevKV: prev)
    }

    static let taskKey = ClusterRepository.taskKey("t1")
    static let nodeKey = ClusterRepository.nodeKey("n1")

    // (old state, new state, expected event): every transition the masters make, and the silent ones.
    static let taskCases: [(TaskState?, TaskState, ClusterEventType?)] = [
        (nil, .pending, .taskCreated),
        (.pending, .assigned, .taskAssigned),
        (.assigned, .running, .taskRunning),
        (.running, .completed, .taskCompleted),
        (.assigned, .completed, .taskCompleted),
        (.running, .failed, .taskFailed),
        (.assigned, .failed, .taskFailed),
        (.running, .cancelled, .taskCancelled),
        (.pending, .cancelled, .taskCancelled),
        (.running, .lost, .taskLost),
        (.assigned, .pending, .taskRescheduled),
        (.running, .pending, .taskRescheduled),
        (.lost, .pending, .taskRescheduled),
        (.failed, .pending, .taskRescheduled),
        (.completed, .pending, .taskRescheduled),
        (.pending, .pending, nil),
        (.running, .running, nil),
    ]

    @Test("task changes map to task events by old and new state", arguments: 0..<taskCases.count)
    func tasks(_ i: Int) throws {
        let (old, new, expected) = Self.taskCases[i]
        let event = EventTranslator.translate(Self.change(Self.taskKey, old: old.map { Self.task($0) }, new: Self.task(new)))
        #expect(event?.type == expected)
        if let event {
            #expect(event.revision == 7)
            #expect(event.previousState == old?.rawValue)
            guard case .task(let t) = event.subject else { Issue.record("not a task subject"); return }
            #expect(t.state == new)
            #expect(t.revision == 7)
        }
    }

    @Test("a new assignment without passing through pending (a new epoch) is task_assigned again")
    func reassigned() {
        let event = EventTranslator.translate(Self.change(Self.taskKey, old: Self.task(.assigned, epoch: 1), new: Self.task(.assigned, epoch: 2)))
        #expect(event?.type == .taskAssigned)
        #expect(EventTranslator.translate(Self.change(Self.taskKey, old: Self.task(.assigned, epoch: 2), new: Self.task(.assigned, epoch: 2))) == nil)
    }

    static let nodeCases: [(NodeRecord?, NodeRecord, ClusterEventType?)] = [
        (nil, node(.ready), .nodeJoined),
        (nil, node(.notReady), .nodeJoined),
        (node(.ready), node(.notReady), .nodeNotReady),
        (node(.notReady), node(.down), .nodeDown),
        (node(.ready), node(.draining, schedulable: false), .nodeDrained),
        (node(.down), node(.ready), .nodeReady),
        (node(.draining, schedulable: false), node(.ready), .nodeReady),
        (node(.ready), node(.ready, schedulable: false), .nodeCordoned),
        (node(.ready, schedulable: false), node(.ready), .nodeUncordoned),
        (node(.ready), node(.ready), nil),
    ]

    @Test("node changes map to node events; state changes win over schedulability", arguments: 0..<nodeCases.count)
    func nodes(_ i: Int) {
        let (old, new, expected) = Self.nodeCases[i]
        var heartbeat = new
        heartbeat.lastHeartbeat += 1000 // a heartbeat alone never makes an event
        let event = EventTranslator.translate(Self.change(Self.nodeKey, old: old, new: heartbeat))
        #expect(event?.type == expected)
        #expect(event?.previousState == (expected == nil ? nil : old?.info.state.rawValue))
    }

    @Test("leader record: a new id or term is leader_elected; a rewrite is not; garbage is skipped")
    func leader() {
        let key = ClusterRepository.leaderKey
        let first = EventTranslator.translate(Self.change(key, old: LeaderRecord?.none, new: LeaderRecord(id: "m1", term: 5)))
        #expect(first?.type == .leaderElected)
        #expect(first?.subject == .leader(LeaderRecord(id: "m1", term: 5)))
        // The lead's own bytes, as written by hand.
        let raw = WatchEvent(kind: .put, kv: Self.kv(key, Array(#"{"id":"m2","term":6}"#.utf8), revision: 9), prevKV: nil)
        #expect(EventTranslator.translate(raw)?.subject == .leader(LeaderRecord(id: "m2", term: 6)))
        #expect(EventTranslator.translate(Self.change(key, old: LeaderRecord(id: "m1", term: 5), new: LeaderRecord(id: "m1", term: 5))) == nil)
        #expect(EventTranslator.translate(Self.change(key, old: LeaderRecord(id: "m1", term: 5), new: LeaderRecord(id: "m1", term: 6)))?.type == .leaderElected)
        let garbage = WatchEvent(kind: .put, kv: Self.kv(key, Array("nope".utf8), revision: 9), prevKV: nil)
        #expect(EventTranslator.translate(garbage) == nil)
    }

    @Test("deletions, undecodable records and foreign keys")
    func edges() {
        let deletedTask = EventTranslator.translate(Self.change(Self.taskKey, old: Self.task(.completed), new: TaskRecord?.none))
        #expect(deletedTask?.type == .taskDeleted)
        #expect(deletedTask?.subject == .removed(id: "t1"))
        #expect(deletedTask?.previousState == "completed")
        let removedNode = EventTranslator.translate(Self.change(Self.nodeKey, old: Self.node(.down), new: NodeRecord?.none))
        #expect(removedNode?.type == .nodeRemoved)
        let corrupt = WatchEvent(kind: .put, kv: Self.kv(Self.taskKey, Array("{".utf8), revision: 3), prevKV: nil)
        #expect(EventTranslator.translate(corrupt) == nil)
        let foreign = WatchEvent(kind: .put, kv: Self.kv(Array("/orchestrator/other/x".utf8), Array("{}".utf8), revision: 3), prevKV: nil)
        #expect(EventTranslator.translate(foreign) == nil)
    }

    @Test("the SSE encoder numbers the events of a multi-event revision and resumes inside it")
    func encoderIDs() {
        var a = Self.task(.pending)
        a.id = "a"
        var b = Self.task(.pending)
        b.id = "b"
        let response = WatchResponse(revision: 8, events: [
            Self.change(ClusterRepository.taskKey("x"), old: TaskRecord?.none, new: Self.task(.pending), revision: 6),
            Self.change(ClusterRepository.taskKey("a"), old: TaskRecord?.none, new: a, revision: 8),
            WatchEvent(kind: .put, kv: Self.kv(Array("/orchestrator/other".utf8), [], revision: 8), prevKV: nil), // no event
            Self.change(ClusterRepository.taskKey("b"), old: TaskRecord?.none, new: b, revision: 8),
        ])
        func ids(_ text: String) -> [String] {
            text.split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }
        }
        var fresh = EventStreamEncoder()
        #expect(ids(fresh.encode(response)) == ["6", "8:0", "8"])
        var resumed = EventStreamEncoder(cursor: EventCursor(revision: 8, index: 0))
        #expect(ids(resumed.encode(response)) == ["8"])
        var done = EventStreamEncoder(cursor: EventCursor(revision: 8))
        #expect(done.encode(response) == "")
        // Filtering keeps the numbering of the unfiltered stream; the last kept event gets the plain id.
        var filtered = EventStreamEncoder(filter: [.taskCreated], cursor: EventCursor(revision: 6))
        let text = filtered.encode(response)
        #expect(ids(text) == ["8:0", "8"])
        #expect(text.contains("event: task_created\ndata: {"))
    }
}
