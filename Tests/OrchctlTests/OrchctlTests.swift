import ArgumentParser
import Foundation
import Testing
@testable import OrchctlKit

@Suite struct OutputTests {
    @Test("a table pads every column to its widest cell, three spaces apart, with no trailing blanks")
    func tableAlignment() {
        let table = Table(headers: ["ID", "STATE", "AGE"], rows: [
            ["a", .state("running"), "5s ago"],
            ["longer-id", "pending", "-"],
        ])
        #expect(table.render(colours: false) == """
        ID          STATE     AGE
        a           running   5s ago
        longer-id   pending   -
        """)
    }

    @Test("colour codes do not count toward the width")
    func colouredAlignment() {
        let table = Table(headers: ["STATE", "X"], rows: [[.state("failed"), "1"], ["completed", "2"]])
        let plain = table.render(colours: false).split(separator: "\n")
        let coloured = table.render(colours: true).split(separator: "\n")
        #expect(coloured[1].contains("\u{1B}[31mfailed\u{1B}[0m"))
        let stripped = coloured.map { $0.replacingOccurrences(of: "\u{1B}[31m", with: "").replacingOccurrences(of: "\u{1B}[0m", with: "")
            .replacingOccurrences(of: "\u{1B}[32m", with: "") }
        #expect(stripped == plain.map(String.init))
    }

    static let ageCases: [(ms: Int64, now: Int64, expected: String)] = [
        (1_000_000, 1_012_000, "12s ago"),
        (1_000_000, 1_000_000, "0s ago"),
        (1_000_000, 1_000_000 + 119_000, "119s ago"),
        (1_000_000, 1_000_000 + 300_000, "5m ago"),
        (1_000_000, 1_000_000 + 3 * 3_600_000, "3h ago"),
        (1_000_000, 1_000_000 + 5 * 86_400_000, "5d ago"),
        (0, 1_000_000, "-"),
        (1_005_000, 1_000_000, "in 5s"),
        (1_000_500, 1_000_000, "0s ago"),
    ]

    @Test("ages: seconds, minutes, hours, days; never; the future")
    func ages() {
        for c in Self.ageCases {
            #expect(Age.format(ms: c.ms, now: c.now) == c.expected, "\(c)")
        }
    }

    @Test("YAML: nested mappings, sequences of mappings, empty collections, and quoting what would read back as another type")
    func yaml() {
        let value = JSONValue.parse(#"""
        {"id":"t1","count":3,"ratio":0.5,"ok":true,"none":null,"empty":{},"list":[],
         "spec":{"command":["sh","-c","exit 3"],"env":{"A":"yes","B":"12","C":""}},
         "filters":[{"filter":"ready","removed":0},{"filter":"resources","removed":2}],
         "text":"a: b","multi":"x\ny"}
        """#)!
        #expect(YAML.render(value) == """
        count: 3
        empty: {}
        filters:
        - filter: ready
          removed: 0
        - filter: resources
          removed: 2
        id: t1
        list: []
        multi: "x\\ny"
        none: null
        ok: true
        ratio: 0.5
        spec:
          command:
          - sh
          - "-c"
          - exit 3
          env:
            A: "yes"
            B: "12"
            C: ""
        text: "a: b"

        """)
    }

    @Test("JSON output keeps booleans, integers and nulls as the server sent them")
    func jsonRoundTrip() {
        let text = #"{"a":true,"b":1,"c":1.5,"d":null,"e":"x/y"}"#
        #expect(JSONValue.parse(text)!.jsonText(pretty: false) == text)
    }

    @Test("the task description shows the placement: algorithm, score, nodes each filter removed")
    func taskDescription() {
        let task = JSONValue.parse(#"""
        {"id":"t1","spec":{"name":"n","image":"alpine","command":["sh","-c","exit 3"],"resources":{"cpu":100,"memory":64},
         "restart_policy":{"condition":"never","max_retries":3}},"state":"failed","exit_code":3,"node":null,"retries":0,
         "reason":"exited","created_at":1000,"updated_at":2000,"revision":9,
         "placement":{"node":"w1","score":0.25,"algorithm":"spread","filters":[{"filter":"ready","removed":1},{"filter":"resources","removed":0}]}}
        """#)!
        let text = Views.taskDescription(task, now: 12_000)
        #expect(text.contains("Command:    sh -c 'exit 3'"))
        #expect(text.contains("node w1, algorithm spread, score 0.250"))
        #expect(text.contains("FILTER      NODES REMOVED"))
        #expect(text.contains("ready       1"))
        #expect(text.contains("Created:    11s ago"))
    }
}

@Suite struct CommandLineTests {
    @Test("task run's flags become the submission's body")
    func taskRunBody() throws {
        let command = try Orchctl.parseAsRoot([
            "task", "run", "job", "--image", "alpine", "--cpu", "500", "--memory", "256", "--env", "A=1", "--env", "B=x=y",
            "--scheduler", "spread", "--selector", "zone=a", "--restart", "on-failure", "--max-retries", "2", "--wait",
            "--", "sh", "-c", "exit 3",
        ])
        let run = try #require(command as? TaskRun)
        #expect(run.wait)
        #expect(try run.body() == JSONValue.parse(#"""
        {"name":"job","image":"alpine","command":["sh","-c","exit 3"],"resources":{"cpu":500,"memory":256},
         "env":{"A":"1","B":"x=y"},"node_selector":{"zone":"a"},"scheduler":"spread",
         "restart_policy":{"condition":"on-failure","max_retries":2}}
        """#))
    }

    @Test("global options parse on any command; -o takes table, json or yaml")
    func globalOptions() throws {
        let command = try Orchctl.parseAsRoot(["node", "ls", "--master", "https://a:1,b:2", "-o", "yaml", "--cacert", "/ca.pem"])
        let list = try #require(command as? NodeList)
        #expect(list.options.output == .yaml)
        let settings = try list.options.settings(environment: [:])
        #expect(settings.masters == ["https://a:1", "https://b:2"])
        #expect(settings.caCertificate == "/ca.pem")
    }

    static let usageCases: [(arguments: [String], expected: Int32)] = [
        (["task", "run", "x"], 2),                                               // no --image
        (["task", "run", "x", "--image", "a", "--env", "novalue"], 2),
        (["task", "run", "x", "--image", "a", "--logs"], 2),                     // --logs without --wait
        (["task", "run", "x", "--image", "a", "--restart", "sometimes"], 2),
        (["task", "ls", "-o", "xml"], 2),
        (["events", "--since", "abc"], 2),
        (["nonsense"], 2),
        (["task", "ls", "--master", "ftp://x"], 2),
        (["task", "--help"], 0),
    ]

    @Test("usage errors exit 2, help exits 0 (completion scripts: the integration tests)")
    func exitCodes() async {
        for c in Self.usageCases {
            #expect(await Orchctl.run(c.arguments) == c.expected, "\(c.arguments)")
        }
    }

    @Test("every command's help has an example")
    func examples() {
        let commands: [any ParsableCommand.Type] = [Orchctl.self, TaskCommand.self, TaskRun.self, TaskList.self, TaskGet.self,
            TaskLogs.self, TaskRemove.self, NodeCommand.self, NodeList.self, NodeGet.self, NodeAction.Drain.self,
            NodeAction.Cordon.self, NodeAction.Uncordon.self, EventsCommand.self, ClusterCommand.self]
        for command in commands {
            #expect(command.configuration.discussion.contains("Example:\n  orchctl"), "\(command)")
        }
    }
}

@Suite struct SettingsTests {
    @Test("flags win over the environment, which wins over the config file")
    func precedence() throws {
        let config = try ConfigFile.parse("""
        # a comment
        masters = http://c:1
        token = from-config
        cacert = "/c/ca.pem"
        """)
        var s = try ConnectionSettings.resolve(flags: [:], environment: [:], config: config)
        #expect(s.masters == ["http://c:1"])
        #expect(s.token == "from-config")
        #expect(s.caCertificate == "/c/ca.pem")
        s = try ConnectionSettings.resolve(flags: [:], environment: ["ORCH_MASTERS": "e:2", "ORCH_API_TOKEN": "from-env"], config: config)
        #expect(s.masters == ["https://e:2"])  // bare host:port is https when a CA is set
        #expect(s.token == "from-env")
        s = try ConnectionSettings.resolve(flags: ["masters": "http://f:3", "token-file": "/t"], environment: ["ORCH_API_TOKEN": "from-env"],
                                           config: config, readFile: { _ in " from-file\n" })
        #expect(s.masters == ["http://f:3"])
        #expect(s.token == "from-file")
        #expect(try ConnectionSettings.resolve(flags: [:], environment: [:], config: [:]).masters == ["http://127.0.0.1:8080"])
    }

    @Test("config files with unknown keys or lines without = are usage errors")
    func badConfig() {
        #expect(throws: OrchctlError.usage("config:2: unknown key \"tokn\" (known: cacert, cert, key, masters, token, token-file)")) {
            try ConfigFile.parse("masters = x\ntokn = y")
        }
        #expect(throws: OrchctlError.self) { try ConfigFile.parse("just words") }
        #expect(throws: OrchctlError.self) { try ConnectionSettings.resolve(flags: ["cert": "/c"], environment: [:], config: [:]) }
    }

    @Test("exit codes: refused 1, usage 2, unreachable 3; a refusal prints the server's message on one line")
    func errors() {
        let refused = OrchctlError.fromResponse(status: 404, body: #"{"error":{"code":"not_found","message":"no task \"x\""}}"#)
        #expect(refused == .refused(status: 404, code: "not_found", message: "no task \"x\""))
        #expect(refused.exitCode == 1 && refused.description == "no task \"x\"")
        #expect(OrchctlError.fromResponse(status: 502, body: "<html>\nBad gateway").description == "HTTP 502: <html>")
        #expect(OrchctlError.usage("a\nb").description == "a b")
        #expect(OrchctlError.usage("x").exitCode == 2)
        #expect(OrchctlError.unreachable("x").exitCode == 3)
        #expect(OrchctlError.taskExit(7).exitCode == 7)
    }
}

@Suite struct StreamTests {
    @Test("the SSE parser joins chunks split anywhere, skips comments, handles CRLF and multi-line data")
    func serverSentEvents() {
        let text = "retry: 2000\n: events after revision 4\n\nid: 5:0\nevent: task_created\ndata: {\"a\":1}\n\n: keepalive\n\r\nid: 5\r\nevent: x\r\ndata: l1\r\ndata: l2\r\n\r\nevent: shutdown\ndata: {}\n\n"
        let bytes = Array(text.utf8)
        for split in [1, 3, 7, bytes.count] {
            var parser = ServerSentEventParser()
            var events: [ServerSentEvent] = []
            var i = 0
            while i < bytes.count {
                events += parser.feed(bytes[i..<min(i + split, bytes.count)])
                i += split
            }
            #expect(events == [
                ServerSentEvent(id: "5:0", event: "task_created", data: "{\"a\":1}"),
                ServerSentEvent(id: "5", event: "x", data: "l1\nl2"),
                ServerSentEvent(id: nil, event: "shutdown", data: "{}"),
            ], "chunks of \(split)")
        }
    }

    static let lifecycleCases: [(json: String, final: Bool, code: Int32)] = [
        (#"{"state":"completed","spec":{"restart_policy":{"condition":"on-failure","max_retries":3}},"retries":0}"#, true, 0),
        (#"{"state":"failed","exit_code":3,"spec":{"restart_policy":{"condition":"never","max_retries":3}},"retries":0}"#, true, 3),
        (#"{"state":"failed","exit_code":3,"spec":{"restart_policy":{"condition":"on-failure","max_retries":3}},"retries":1}"#, false, 3),
        (#"{"state":"failed","exit_code":3,"spec":{"restart_policy":{"condition":"on-failure","max_retries":3}},"retries":3}"#, true, 3),
        (#"{"state":"completed","spec":{"restart_policy":{"condition":"always","max_retries":3}},"retries":0}"#, false, 0),
        (#"{"state":"lost","spec":{"restart_policy":{"condition":"never","max_retries":3}},"retries":0}"#, true, 1),
        (#"{"state":"cancelled","spec":{}}"#, true, 1),
        (#"{"state":"running","spec":{}}"#, false, 1),
        (#"{"state":"failed","exit_code":-9,"spec":{"restart_policy":{"condition":"never"}}}"#, true, 1),
    ]

    @Test("a task is final when cancelled, or ended with no restart left under its policy")
    func lifecycle() {
        for c in Self.lifecycleCases {
            let task = JSONValue.parse(c.json)!
            #expect(TaskLifecycle.isFinal(task) == c.final, "\(c.json)")
            if c.final { #expect(TaskLifecycle.exitCode(task) == c.code, "\(c.json)") }
        }
    }

    @Test("the API contract check names what a document lacks")
    func contract() {
        let document = JSONValue.parse(#"""
        {"paths":{"/api/v1/tasks":{"get":{"parameters":[{"name":"state","in":"query"}]}}},
         "components":{"schemas":{"Task":{"properties":{"id":{}}}}}}
        """#)!
        let problems = APIContract.problems(in: document)
        #expect(problems.contains("POST /api/v1/tasks is not in the document"))
        #expect(problems.contains("GET /api/v1/tasks: parameter continue is not declared"))
        #expect(!problems.contains { $0.contains("parameter state") })
        #expect(problems.contains("schema Task: property state is not in the document"))
        #expect(problems.contains("schema Node is not in the document"))
    }

    @Test("query strings percent-encode values and drop absent ones")
    func query() {
        #expect(Query.string([("state", "running,pending"), ("node", nil), ("continue", "a+b/=")]) == "?state=running,pending&continue=a%2Bb%2F%3D")
        #expect(Query.string([("x", nil)]) == "")
    }
}

@Suite struct LogResumeTests {
    static func out(_ time: String, _ text: String, _ stream: String = "stdout") -> LogOutput {
        LogOutput(stream: stream, time: time, text: text)
    }

    /// Feeds the outputs in order; whether each was new.
    static func feed(_ resume: inout LogResume, _ outputs: [LogOutput]) -> [Bool] {
        outputs.map { resume.isNew($0) }
    }

    @Test("a resumed follow drops the replay of the last instant (also what the tail had cut), then passes new output")
    func replay() {
        var resume = LogResume()
        // Shown before the break: the tail cut "a" (same instant as "b").
        #expect(Self.feed(&resume, [Self.out("t1", "b"), Self.out("t2", "c"), Self.out("t2", "d", "stderr")]) == [true, true, true])
        #expect(resume.since == "t2")
        resume.reconnected()
        // The server replays from t2: everything of t2 until c and d came again ("x" is older than
        // what was shown at t2), then new output.
        #expect(Self.feed(&resume, [Self.out("t2", "x"), Self.out("t2", "c"), Self.out("t2", "d", "stderr"), Self.out("t3", "e")])
                == [false, false, false, true])
        // A second break: the replay is dropped again; new output of the same instant after it passes.
        resume.reconnected()
        #expect(Self.feed(&resume, [Self.out("t3", "e"), Self.out("t3", "f")]) == [false, true])
    }

    @Test("--since: durations back from now, seconds, RFC 3339; anything else is refused")
    func sinceParameter() {
        #expect(TaskLogs.sinceParameter("30s", nowMs: 100_000) == "70")
        #expect(TaskLogs.sinceParameter("2m", nowMs: 1_000_000) == "880")
        #expect(TaskLogs.sinceParameter("1h", nowMs: 1_000) == "0")
        #expect(TaskLogs.sinceParameter("1700000000", nowMs: 0) == "1700000000")
        #expect(TaskLogs.sinceParameter("2026-01-02T03:04:05Z", nowMs: 0) == "2026-01-02T03:04:05Z")
        #expect(TaskLogs.sinceParameter("yesterday", nowMs: 0) == nil)
        #expect(TaskLogs.sinceParameter("-5m", nowMs: 0) == nil)
    }
}
