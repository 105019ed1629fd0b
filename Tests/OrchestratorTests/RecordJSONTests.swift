import ClusterModel
import Foundation
@testable import Orchestrator
import Raft
import Store
import Testing

/// The hand-written JSON of stored records (`Records+JSON.swift`) against Foundation's `Codable`
/// path, on random records: what one writes the other reads back equal, and without numbers that
/// print differently (a placement's score) the text is byte for byte what `JSONEncoder` writes, so
/// records written by older masters and by this one are the same.
@Suite struct RecordJSONTests {
    static let seeds: [UInt64] = Array(1...200)

    @Test("tasks: the hand-written text reads back equal through JSONDecoder, and JSONEncoder's through the hand-written reader",
          arguments: seeds)
    func tasksRoundTrip(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let task = RandomRecords.task(&random)
        let fast = task.jsonBytes
        #expect(try JSONDecoder().decode(TaskRecord.self, from: Data(fast)) == task, "seed \(seed): \(String(decoding: fast, as: UTF8.self))")
        let foundation = Self.foundationBytes(task)
        #expect(try TaskRecord(jsonBytes: foundation) == task, "seed \(seed): \(String(decoding: foundation, as: UTF8.self))")
        if task.placement == nil {
            #expect(fast == foundation, "seed \(seed):\n\(String(decoding: fast, as: UTF8.self))\n\(String(decoding: foundation, as: UTF8.self))")
        }
    }

    @Test("nodes: the same both ways, and the same text", arguments: seeds)
    func nodesRoundTrip(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let node = RandomRecords.node(&random)
        let fast = node.jsonBytes
        #expect(try JSONDecoder().decode(NodeRecord.self, from: Data(fast)) == node, "seed \(seed)")
        #expect(try NodeRecord(jsonBytes: Self.foundationBytes(node)) == node, "seed \(seed)")
        #expect(fast == Self.foundationBytes(node), "seed \(seed)")
    }

    @Test("the API's task views: the text APIJSON's encoder writes (unescaped slashes, the revision among the keys)", arguments: seeds)
    func taskViews(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var tasks: [TaskView] = []
        for _ in 0..<3 {
            var task = RandomRecords.task(&random)
            task.markStored(revision: Int64.random(in: 1...1 << 40, using: &random))
            tasks.append(TaskView(task))
        }
        let list = TaskListView(tasks: tasks, revision: 99, next: Bool.random(using: &random) ? RandomRecords.string(&random) : nil)
        for (fast, foundation) in [(APIJSON.encode(tasks[0]), Self.apiBytes(tasks[0])), (APIJSON.encode(list), Self.apiBytes(list))] {
            if tasks.allSatisfy({ $0.record.placement == nil }) {
                #expect(fast == foundation, "seed \(seed):\n\(String(decoding: fast, as: UTF8.self))\n\(String(decoding: foundation, as: UTF8.self))")
            }
            let a = try JSONSerialization.jsonObject(with: Data(fast)) as? NSObject
            let b = try JSONSerialization.jsonObject(with: Data(foundation)) as? NSObject
            #expect(a == b, "seed \(seed)")
        }
    }

    @Test("the repository reads a record the hand-written reader does not expect through JSONDecoder, and names a corrupt one")
    func fallbackAndCorruption() throws {
        // Numbers JSONSerialization carries exactly (it re-reads the text below).
        var task = TaskRecord(id: "t-1", spec: TaskSpec(name: "web/1", image: "busybox", command: ["sh", "-c", "echo \"hi\""],
                                                      env: ["A": "1"], nodeSelector: ["rack": "r1"]),
                              state: .assigned, now: 1_700_000_000_000)
        task.node = "n1"
        task.epoch = 3
        task.placement = PlacementRecord(node: "n1", score: 0.25, algorithm: .spread, filters: [FilterOutcome(filter: "fits", removed: 2)])
        // Pretty-printed, with a key a newer master might add: both readers take it.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted]
        var object = try #require(try JSONSerialization.jsonObject(with: try encoder.encode(task)) as? [String: Any])
        object["added_later"] = ["nested": [1, 2, ["x": NSNull()]]]
        let text = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted])
        #expect(try TaskRecord(jsonBytes: Array(text)) == task)
        let read = try ClusterRepository.decode(TaskRecord.self, Self.kv("/orchestrator/tasks/t", Array(text), revision: 42))
        #expect(read.revision == 42 && read.storedState == task.state)

        // A number JSONDecoder takes for an integer and the hand-written reader leaves to it.
        let exponent = Array(String(decoding: task.jsonBytes, as: UTF8.self).replacingOccurrences(of: "\"retries\":\(task.retries)", with: "\"retries\":\(task.retries).0").utf8)
        #expect(throws: JSONByteReaderError.self) { try TaskRecord(jsonBytes: exponent) }
        if let viaFoundation = try? JSONDecoder().decode(TaskRecord.self, from: Data(exponent)) {
            #expect(try ClusterRepository.decode(TaskRecord.self, Self.kv("/orchestrator/tasks/t", exponent, revision: 1)).retries == viaFoundation.retries)
        }

        // A required key missing: both refuse, and the repository says which record.
        let missing = Array(String(decoding: task.jsonBytes, as: UTF8.self).replacingOccurrences(of: "\"reason\":", with: "\"reason_\":").utf8)
        #expect(throws: JSONByteReaderError.self) { try TaskRecord(jsonBytes: missing) }
        #expect { try ClusterRepository.decode(TaskRecord.self, Self.kv("/orchestrator/tasks/bad", missing, revision: 1)) }
            throws: { "\($0)".contains("/orchestrator/tasks/bad") }
    }

    @Test("the reader: escapes, surrogate pairs, integer bounds, trailing bytes")
    func reader() throws {
        var r = JSONByteReader(Array(#"["a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z", 9223372036854775807, -9223372036854775808, 1.5e3, true, null]"#.utf8))
        var values: [String] = []
        var index = 0
        try r.array { r in
            switch index {
            case 0: values.append(try r.string())
            case 1: values.append(String(try r.integer(Int64.self)))
            case 2: values.append(String(try r.integer(Int64.self)))
            case 3: values.append(String(try r.double()))
            case 4: values.append(String(try r.bool()))
            default: values.append(String(try r.null()))
            }
            index += 1
        }
        try r.end()
        #expect(values == ["a\"\\/\u{8}\u{C}\n\r\té😀z", "9223372036854775807", "-9223372036854775808", "1500.0", "true", "true"])

        for bad in ["9223372036854775808", "-1", "", "1.5", "--1"] {
            var r = JSONByteReader(Array(bad.utf8))
            #expect(throws: JSONByteReaderError.self, "\(bad) as UInt8") { _ = try r.integer(UInt8.self) }
        }
        for bad in [#""\ud83d""#, #""\uzzzz""#, "\"a\u{1}\"", #""open"#, #""\q""#] {
            var r = JSONByteReader(Array(bad.utf8))
            #expect(throws: JSONByteReaderError.self, "\(bad)") { _ = try r.string() }
        }
        var trailing = JSONByteReader(Array("{} x".utf8))
        try trailing.object { r, _ in try r.skip() }
        #expect(throws: JSONByteReaderError.self) { try trailing.end() }
    }

    @Test("the writer: integers at their bounds, strings copied whole or escaped, both slash styles, as JSONEncoder writes them")
    func writer() throws {
        let strings = ["", "plain-id_0123", "a/b", "quote\"back\\slash", "tab\there\n", "\u{1}\u{1F}", "é😀中", "/", "ends with \\"]
        for escapesSlashes in [true, false] {
            var w = JSONByteWriter(escapesSlashes: escapesSlashes)
            w.beginArray()
            for s in strings { w.string(s) }
            w.integer(0); w.integer(-1); w.integer(7); w.integer(Int64.min); w.integer(Int64.max); w.integer(UInt64.max); w.integer(Int8.min)
            w.endArray()
            let encoder = JSONEncoder()
            if !escapesSlashes { encoder.outputFormatting = [.withoutEscapingSlashes] }
            let strings = String(decoding: try encoder.encode(strings), as: UTF8.self).dropLast()
            let numbers = String(decoding: try encoder.encode([Int64(0), -1, 7, Int64.min, Int64.max]), as: UTF8.self).dropFirst().dropLast()
            #expect(String(decoding: w.bytes, as: UTF8.self) == "\(strings),\(numbers),\(UInt64.max),-128]")
        }
    }

    static func kv(_ key: String, _ value: [UInt8], revision: Int64) -> KeyValue {
        KeyValue(key: Array(key.utf8), createRevision: revision, modRevision: revision, version: 1, value: value, lease: 0)
    }

    static func apiBytes<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try! encoder.encode(value))
    }

    static func foundationBytes<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try! encoder.encode(value))
    }
}

/// Random records whose strings have quotes, backslashes, slashes, control characters and text
/// beyond ASCII, and whose optional fields are sometimes absent.
enum RandomRecords {
    static let alphabet: [String] = ["a", "Z", "0", "-", " ", "\"", "\\", "/", "\n", "\t", "é", "😀", "👍🏻", "中", "\u{1}", "\u{1F}", "\r", "e\u{301}"]

    static func string(_ r: inout SplitMix64, max: Int = 12) -> String {
        (0..<Int.random(in: 0...max, using: &r)).map { _ in alphabet.randomElement(using: &r)! }.joined()
    }

    static func map(_ r: inout SplitMix64) -> [String: String] {
        var map: [String: String] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &r) { map["k" + String(Int.random(in: 0...99, using: &r))] = string(&r) }
        return map
    }

    static func maybe<T>(_ r: inout SplitMix64, _ make: (inout SplitMix64) -> T) -> T? {
        Bool.random(using: &r) ? make(&r) : nil
    }

    static func spec(_ r: inout SplitMix64) -> TaskSpec {
        TaskSpec(name: string(&r), image: string(&r), command: (0..<Int.random(in: 0...3, using: &r)).map { _ in string(&r) },
                 env: map(&r), resources: Resources(cpu: Int.random(in: 0...64_000, using: &r), memory: Int.random(in: 0...1 << 20, using: &r)),
                 restartPolicy: RestartPolicy(condition: RestartCondition.allCases.randomElement(using: &r)!, maxRetries: Int.random(in: -1...10, using: &r),
                                              backoffMs: Int.random(in: 0...100_000, using: &r), maxBackoffMs: Int.random(in: 0...Int.max, using: &r)),
                 nodeSelector: map(&r), scheduler: maybe(&r) { SchedulingAlgorithm.allCases.randomElement(using: &$0)! })
    }

    static func task(_ r: inout SplitMix64) -> TaskRecord {
        var task = TaskRecord(id: string(&r), spec: spec(&r), state: TaskState.allCases.randomElement(using: &r)!,
                              now: Int64.random(in: Int64.min...Int64.max, using: &r))
        task.node = maybe(&r) { string(&$0) }
        task.epoch = UInt64.random(in: 0...UInt64.max, using: &r)
        task.retries = Int.random(in: 0...1000, using: &r)
        task.reason = string(&r, max: 40)
        task.exitCode = maybe(&r) { Int.random(in: -255...255, using: &$0) }
        task.placement = maybe(&r) { r in
            PlacementRecord(node: string(&r), score: Double.random(in: -1...1, using: &r), algorithm: SchedulingAlgorithm.allCases.randomElement(using: &r)!,
                            filters: (0..<Int.random(in: 0...3, using: &r)).map { _ in FilterOutcome(filter: string(&r), removed: Int.random(in: 0...5000, using: &r)) })
        }
        task.notBefore = maybe(&r) { Int64.random(in: 0...Int64.max, using: &$0) }
        task.moving = maybe(&r) { string(&$0) }
        task.runtimeStartMs = maybe(&r) { Int64.random(in: 0...100_000, using: &$0) }
        task.updatedAt = Int64.random(in: Int64.min...Int64.max, using: &r)
        return task
    }

    static func node(_ r: inout SplitMix64) -> NodeRecord {
        let info = NodeInfo(id: string(&r), state: NodeState.allCases.randomElement(using: &r)!, schedulable: Bool.random(using: &r), labels: map(&r),
                            capacity: Resources(cpu: Int.random(in: 0...64_000, using: &r), memory: Int.random(in: 0...1 << 20, using: &r)),
                            allocated: Resources(cpu: Int.random(in: -10...64_000, using: &r), memory: Int.random(in: 0...1 << 20, using: &r)),
                            taskCount: Int.random(in: 0...5000, using: &r))
        return NodeRecord(info: info, address: string(&r), lastHeartbeat: Int64.random(in: 0...Int64.max, using: &r),
                          credentialDigest: maybe(&r) { string(&$0) })
    }
}
