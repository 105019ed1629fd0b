import ClusterModel
import Testing
@testable import Orchestrator

@Suite struct TaskSpecParserTests {
    let parser = TaskSpecParser()

    func parse(_ json: String) throws(APIError) -> TaskSpec {
        try parser.parse(Array(json.utf8))
    }

    @Test("the README's example task parses, with defaults filled in")
    func readmeExample() throws {
        let spec = try parse(#"{"name":"test-task","image":"alpine","command":["echo","hello world"],"resources":{"cpu":500,"memory":256}}"#)
        #expect(spec.name == "test-task")
        #expect(spec.image == "alpine")
        #expect(spec.command == ["echo", "hello world"])
        #expect(spec.resources == Resources(cpu: 500, memory: 256))
        #expect(spec.restartPolicy == RestartPolicy())
        #expect(spec.scheduler == nil)
    }

    @Test("unspecified resources default to cpu 1000 and memory 512")
    func defaults() throws {
        #expect(try parse(#"{"name":"t","image":"alpine"}"#).resources == Resources(cpu: 1000, memory: 512))
        #expect(try parse(#"{"name":"t","image":"alpine","resources":{"cpu":250}}"#).resources == Resources(cpu: 250, memory: 512))
    }

    @Test("what the document states is what the parser enforces: nested nulls refused, lengths in code points, any max_backoff_ms in range")
    func documentedConstraints() throws {
        // The document lets only the top-level optional fields be null.
        #expect(try parse(#"{"name":"t","image":"alpine","resources":null,"restart_policy":null,"env":null}"#).resources == .taskDefault)
        for body in [#"{"name":"t","image":"alpine","resources":{"cpu":null}}"#,
                     #"{"name":"t","image":"alpine","restart_policy":{"max_retries":null}}"#] {
            #expect(throws: APIError.self) { try parse(body) }
        }
        // max_backoff_ms below backoff_ms caps every delay (a schema cannot state a cross-field rule).
        #expect(try parse(#"{"name":"t","image":"alpine","restart_policy":{"max_backoff_ms":5}}"#).restartPolicy.maxBackoffMs == 5)
        // maxLength counts code points: 253 of them pass, whatever graphemes they form.
        let combining = String(repeating: "e\u{301}", count: 127)  // 254 code points, 127 characters
        #expect(throws: APIError.self) { try parse(#"{"name":"\#(combining)","image":"alpine"}"#) }
        #expect(try parse(#"{"name":"\#(String(combining.unicodeScalars.dropLast()))","image":"alpine"}"#).name.unicodeScalars.count == 253)
        // Digests are ASCII hex only.
        #expect(throws: APIError.self) { try parse(#"{"name":"t","image":"alpine@sha256:\#(String(repeating: "\u{FF41}", count: 64))"}"#) }
    }

    @Test("every optional field parses")
    func fullSpec() throws {
        let spec = try parse(#"""
        {"name":"web","image":"registry.local:5000/team/web:1.2@sha256:\#(String(repeating: "a", count: 64))",
         "command":["run"],"env":{"A":"1"},"resources":{"cpu":2000,"memory":1024},
         "restart_policy":{"condition":"always","max_retries":5,"backoff_ms":200,"max_backoff_ms":5000},
         "node_selector":{"disk":"ssd"},"scheduler":"spread"}
        """#)
        #expect(spec.env == ["A": "1"])
        #expect(spec.restartPolicy == RestartPolicy(condition: .always, maxRetries: 5, backoffMs: 200, maxBackoffMs: 5000))
        #expect(spec.nodeSelector == ["disk": "ssd"])
        #expect(spec.scheduler == .spread)
    }

    static let badInputs: [(String, String, String)] = [
        // (body, expected code, text the message must contain)
        ("{", "invalid_json", "not valid JSON"),
        ("[1,2]", "invalid_json", "JSON object"),
        (#"{"image":"alpine"}"#, "missing_field", "name"),
        (#"{"name":"t"}"#, "missing_field", "image"),
        (#"{"name":"t","image":""}"#, "invalid_field", "image"),
        (#"{"name":"t","image":"Alpine"}"#, "invalid_field", "image"),
        (#"{"name":"t","image":"alpine:"}"#, "invalid_field", "tag"),
        (#"{"name":"t","image":"a b"}"#, "invalid_field", "image"),
        (#"{"name":"t","image":"alpine@sha256:xyz"}"#, "invalid_field", "digest"),
        (#"{"name":5,"image":"alpine"}"#, "invalid_field", "name: must be a string"),
        (#"{"name":"","image":"alpine"}"#, "invalid_field", "name"),
        (#"{"name":"t","image":"alpine","command":"echo hi"}"#, "invalid_field", "command: must be an array"),
        (#"{"name":"t","image":"alpine","command":["echo",1]}"#, "invalid_field", "command[1]"),
        (#"{"name":"t","image":"alpine","env":{"A":1}}"#, "invalid_field", "env.A"),
        (#"{"name":"t","image":"alpine","env":{"A=B":"1"}}"#, "invalid_field", "env"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":-1}}"#, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":0}}"#, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":1000000}}"#, "invalid_field", "resources.cpu"),
        (#"{"name":"t","image":"alpine","resources":{"memory":-5}}"#, "invalid_field", "resources.memory"),
        (#"{"name":"t","image":"alpine","resources":{"memory":99999999}}"#, "invalid_field", "resources.memory"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":"500"}}"#, "invalid_field", "resources.cpu: must be an integer"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":1.5}}"#, "invalid_field", "resources.cpu: must be an integer"),
        (#"{"name":"t","image":"alpine","resources":{"cpu":true}}"#, "invalid_field", "resources.cpu: must be an integer"),
        (#"{"name":"t","image":"alpine","resources":{"gpu":1}}"#, "invalid_field", "resources.gpu: unknown field"),
        (#"{"name":"t","image":"alpine","resources":[500]}"#, "invalid_field", "resources"),
        (#"{"name":"t","image":"alpine","scheduler":"fastest"}"#, "invalid_field", "unknown scheduler"),
        (#"{"name":"t","image":"alpine","restart_policy":{"condition":"sometimes"}}"#, "invalid_field", "restart_policy.condition"),
        (#"{"name":"t","image":"alpine","restart_policy":{"max_retries":-1}}"#, "invalid_field", "restart_policy.max_retries"),
        (#"{"name":"t","image":"alpine","imagee":"x"}"#, "invalid_field", "imagee: unknown field"),
    ]

    @Test("bad input: a 4xx naming the field", arguments: 0..<badInputs.count)
    func badInput(_ i: Int) {
        let (body, code, text) = Self.badInputs[i]
        do {
            _ = try parse(body)
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.status == 400)
            #expect(error.code == code, "\(body) -> \(error)")
            #expect(error.message.contains(text), "\(body) -> \(error.message)")
        }
    }

    @Test("bodies over the limit are refused with 413 before parsing")
    func oversized() {
        let body = [UInt8](repeating: UInt8(ascii: " "), count: (1 << 20) + 1)
        #expect(throws: APIError(status: 413, code: "body_too_large", message: "request body is 1048577 bytes; the limit is 1048576")) {
            _ = try parser.parse(body)
        }
    }

    @Test("valid image references", arguments: ["alpine", "alpine:3.20", "library/alpine", "localhost:5000/a/b:c", "ghcr.io/org/app-x_y.z:v1.0-rc"])
    func validImages(_ image: String) throws {
        try TaskSpecParser.validateImage(image)
    }

    /// The container's confinement is the worker operator's (TaskContainerPolicy): a task cannot
    /// ask for privileges, host namespaces, mounts, devices, capabilities or other limits.
    @Test("a task spec has no field that loosens its container", arguments: [
        "privileged", "Privileged", "binds", "mounts", "volumes", "network_mode", "network", "pid_mode", "ipc_mode",
        "devices", "cap_add", "cap_drop", "security_opt", "pids_limit", "log_config", "user", "HostConfig", "host_config",
    ])
    func noConfinementFields(field: String) {
        let json = #"{"name":"t","image":"alpine",""# + field + #"":true}"#
        #expect(throws: APIError.invalid(field, "unknown field")) { try parse(json) }
        let nested = #"{"name":"t","image":"alpine","resources":{"cpu":100,""# + field + #"":1}}"#
        #expect(throws: APIError.invalid("resources.\(field)", "unknown field")) { try parse(nested) }
    }
}

@Suite struct TaskStateTests {
    @Test("allowed and forbidden state transitions")
    func transitions() {
        #expect(TaskState.pending.canMove(to: .assigned))
        #expect(TaskState.assigned.canMove(to: .running))
        #expect(TaskState.running.canMove(to: .completed))
        #expect(TaskState.running.canMove(to: .lost))
        #expect(TaskState.running.canMove(to: .pending), "a drain hands a running task over")
        #expect(TaskState.lost.canMove(to: .pending))
        #expect(!TaskState.completed.canMove(to: .running))
        #expect(!TaskState.cancelled.canMove(to: .pending))
        #expect(!TaskState.pending.canMove(to: .running))
        #expect(TaskState.allCases.filter(\.isTerminal) == [.completed, .failed, .cancelled])
    }
}
