import ArgumentParser
import Foundation

/// `orchctl task ...`
struct TaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task",
        abstract: "Submit, list, inspect and cancel tasks.",
        discussion: """
        Example:
          orchctl task run hello --image alpine -- echo hello
          orchctl task ls --state running
        """,
        subcommands: [TaskRun.self, TaskList.self, TaskGet.self, TaskLogs.self, TaskRemove.self]
    )
}

/// A task's restart condition, as `--restart` takes it.
enum RestartCondition: String, ExpressibleByArgument, CaseIterable {
    case never, onFailure = "on-failure", always
}

/// `orchctl task run NAME --image IMG ... -- CMD ARGS...`
struct TaskRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Submit a task and print its id.",
        discussion: """
        Everything after `--` is the command and its arguments. With --wait, orchctl follows the \
        task until it is done for good (restarts included) and exits with the task's exit code; \
        --logs then prints its output. A submission is sent with an Idempotency-Key, so a retry on \
        another master never creates a second task.

        Example:
          orchctl task run backup --image alpine --cpu 500 --memory 256 --env TARGET=s3 \\
              --selector zone=a --restart never --wait --logs -- sh -c 'tar c /data | wc -c'
        """
    )

    @Argument(help: "The task's name (1-253 characters).")
    var name: String

    @Option(help: "The container image, e.g. alpine or registry:5000/app:1.2.")
    var image: String

    @Option(help: "CPU in millicores (1000 = one core; the server's default is 1000).")
    var cpu: Int?

    @Option(help: "Memory in MB (the server's default is 512).")
    var memory: Int?

    @Option(name: .customLong("env"), help: ArgumentHelp("An environment variable, K=V (repeatable).", valueName: "K=V"))
    var env: [String] = []

    @Option(help: "The scheduler for this task: binpacking, spread or roundrobin.")
    var scheduler: String?

    @Option(name: .customLong("selector"), help: ArgumentHelp("A node label the node must have, k=v (repeatable).", valueName: "k=v"))
    var selector: [String] = []

    @Option(help: "Restart condition: never, on-failure (the server's default) or always.")
    var restart: RestartCondition?

    @Option(name: .customLong("max-retries"), help: "Restarts at most this many times (0-1000).")
    var maxRetries: Int?

    @Flag(help: "Follow the task until it is done; exit with its exit code.")
    var wait = false

    @Flag(help: "With --wait: print the task's output when it is done.")
    var logs = false

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        if logs && !wait { throw ValidationError("--logs needs --wait (use `orchctl task logs ID` for a task that runs on)") }
        _ = try body()
    }

    /// The submission's JSON body.
    func body() throws -> JSONValue {
        var object: [String: JSONValue] = ["name": .string(name), "image": .string(image)]
        if !command.isEmpty { object["command"] = .array(command.map { .string($0) }) }
        var resources: [String: JSONValue] = [:]
        if let cpu { resources["cpu"] = .int(Int64(cpu)) }
        if let memory { resources["memory"] = .int(Int64(memory)) }
        if !resources.isEmpty { object["resources"] = .object(resources) }
        if !env.isEmpty { object["env"] = .object(try Self.pairs(env, flag: "--env").mapValues { .string($0) }) }
        if !selector.isEmpty { object["node_selector"] = .object(try Self.pairs(selector, flag: "--selector").mapValues { .string($0) }) }
        if let scheduler { object["scheduler"] = .string(scheduler) }
        var policy: [String: JSONValue] = [:]
        if let restart { policy["condition"] = .string(restart.rawValue) }
        if let maxRetries { policy["max_retries"] = .int(Int64(maxRetries)) }
        if !policy.isEmpty { object["restart_policy"] = .object(policy) }
        return .object(object)
    }

    /// `K=V` items as a map (the value may contain `=`; a key given twice is an error).
    static func pairs(_ items: [String], flag: String) throws -> [String: String] {
        var map: [String: String] = [:]
        for item in items {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ValidationError("\(flag) \(item): expected KEY=VALUE")
            }
            let key = String(item[..<eq])
            guard map[key] == nil else { throw ValidationError("\(flag): \(key) given twice") }
            map[key] = String(item[item.index(after: eq)...])
        }
        return map
    }

    func run() async throws {
        let body = Data(try self.body().jsonText(pretty: false).utf8)
        try await withClient(options) { client in
            let key = "orchctl-" + UUID().uuidString
            let task = try await client.send(.POST, "/api/v1/tasks", body: body, headers: [("Idempotency-Key", key)]).checkedJSON()
            let id = task["id"]?.string ?? ""
            guard wait else {
                options.emit(task) { id }
                return
            }
            if options.output == .table { Console.out(id) }
            let final = try await Self.waitForEnd(of: task, client: client)
            if options.output != .table { options.emit(final) { "" } }
            let state = final["state"]?.string ?? ""
            let code = TaskLifecycle.exitCode(final)
            var summary = "task \(id) \(state)"
            if let exit = final["exit_code"]?.int, state != "completed" { summary += " with exit code \(exit)" }
            if let reason = final["reason"]?.string, !reason.isEmpty, state != "completed", !reason.hasPrefix("exit code") {
                summary += ": \(reason)"
            }
            if logs {
                let reply = try await client.send(.GET, "/api/v1/tasks/\(pathSegment(id))/logs")
                if (200..<300).contains(reply.status) { Console.raw(reply.text) } else {
                    Console.error("orchctl: no logs: \(OrchctlError.fromResponse(status: reply.status, body: reply.text))")
                }
            }
            Console.error(summary)
            if code != 0 { throw OrchctlError.taskExit(code) }
        }
    }

    /// Follows the task's events from the revision it was created at until it is final.
    static func waitForEnd(of task: JSONValue, client: APIClient) async throws -> JSONValue {
        if TaskLifecycle.isFinal(task) { return task }
        let id = task["id"]?.string ?? ""
        let since = String(task["revision"]?.int ?? 0)
        let types = ["task_assigned", "task_running", "task_completed", "task_failed", "task_rescheduled", "task_cancelled", "task_lost"]
        var follower = EventFollower(client: client, types: types, since: since)
        var final: JSONValue?
        try await follower.run { event in
            guard let t = JSONValue.parse(event.data)?["task"], t["id"]?.string == id else { return true }
            if TaskLifecycle.isFinal(t) {
                final = t
                return false
            }
            return true
        }
        // The event's copy (not a read, which a lagging master might answer from before the end).
        return final ?? task
    }
}

/// `orchctl task ls`
struct TaskList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List tasks, in submission order.",
        discussion: """
        Example:
          orchctl task ls --state running,pending --node worker-1a2b
          orchctl task ls -o json | jq '.tasks[].id'
          orchctl task ls -w --state running
        """,
        aliases: ["list"]
    )

    @Option(help: "Only tasks in these states (comma-separated): pending, assigned, running, completed, failed, cancelled, lost.")
    var state: String?

    @Option(help: "Only tasks on this node.")
    var node: String?

    @Flag(name: [.short, .customLong("watch")], help: "After the list, show every change (redrawn in place on a terminal).")
    var watch = false

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            var tasks: [JSONValue] = []
            var revision: JSONValue = .null
            var token: String?
            repeat {
                let path = "/api/v1/tasks" + Query.string([("state", state), ("node", node), ("limit", "1000"), ("continue", token)])
                let page = try await client.getJSON(path)
                tasks += page["tasks"]?.array ?? []
                if revision.isNull { revision = page["revision"] ?? .null }
                token = page["continue"]?.string.flatMap { $0.isEmpty ? nil : $0 }
            } while token != nil
            if watch {
                let states = state.map { Set($0.split(separator: ",").map(String.init)) }
                let node = node
                let watch = ListWatch(kind: "task", client: client, output: options.output, include: { task in
                    (states?.contains(task["state"]?.string ?? "") ?? true) && (node == nil || task["node"]?.string == node)
                }, table: { Views.taskTable($0, now: $1) })
                try await watch.run(initial: tasks, revision: revision.int ?? 0)
                return
            }
            let now = Age.nowMs
            options.emit(.object(["tasks": .array(tasks), "revision": revision])) {
                tasks.isEmpty ? "No tasks." : Views.taskTable(tasks, now: now).render()
            }
        }
    }
}

/// `orchctl task get ID`
struct TaskGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Show one task, with why it was placed where it is.",
        discussion: """
        Shows the placement explanation: the algorithm, the chosen node's score, and how many \
        nodes each filter removed.

        Example:
          orchctl task get 0193b2c4-...
        """,
        aliases: ["describe"]
    )

    @Argument(help: "The task's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let task = try await client.getJSON("/api/v1/tasks/\(pathSegment(id))")
            let now = Age.nowMs
            options.emit(task) { Views.taskDescription(task, now: now) }
        }
    }
}

/// `orchctl task logs ID`
struct TaskLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print a task's output (following it with -f: stdout to stdout, stderr to stderr).",
        discussion: """
        With -f, new output follows as the task writes it, until its copy ends; when the master \
        streaming it goes away, orchctl follows on from another master without repeating or losing \
        output. --since takes a duration back from now (30s, 5m, 2h), whole seconds since 1970, or \
        an RFC 3339 time.

        Example:
          orchctl task logs 0193b2c4-... --tail 20 -f
          orchctl task logs 0193b2c4-... --stream stderr --since 10m
        """
    )

    @Argument(help: "The task's id.") var id: String
    @Flag(name: [.short, .customLong("follow")], help: "Follow new output until the task's copy ends.") var follow = false
    @Option(help: "Only the last lines.") var tail: Int?
    @Option(help: "Only output since: 30s, 5m, 2h, seconds since 1970, or RFC 3339.") var since: String?
    @Option(help: "stdout, stderr or all.") var stream: String = "all"
    @Option(name: .customLong("limit-bytes"), help: "At most this many bytes (the server's default is 1 MiB).") var limitBytes: Int?
    @OptionGroup var options: GlobalOptions

    func validate() throws {
        if let tail, tail < 0 { throw ValidationError("--tail: a number of lines, 0 or more") }
        if !["all", "stdout", "stderr"].contains(stream) { throw ValidationError("--stream: stdout, stderr or all, got \"\(stream)\"") }
        if let since, Self.sinceParameter(since, nowMs: 0) == nil {
            throw ValidationError("--since: a duration (30s, 5m, 2h), seconds since 1970 or an RFC 3339 time, got \"\(since)\"")
        }
    }

    /// `--since` as the API takes it: a duration becomes whole seconds since 1970.
    static func sinceParameter(_ text: String, nowMs: Int64) -> String? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }), let amount = Int64(text.dropLast()), amount >= 0 {
            return String(max(0, nowMs / 1000 - amount * unit))
        }
        if let seconds = Int64(text), seconds >= 0 { return String(seconds) }
        return text.contains("T") ? text : nil
    }

    func run() async throws {
        let parameters: [(String, String?)] = [
            ("tail", tail.map(String.init)), ("since", since.flatMap { Self.sinceParameter($0, nowMs: Age.nowMs) }),
            ("stream", stream == "all" ? nil : stream), ("limit_bytes", limitBytes.map(String.init)),
        ]
        try await withClient(options) { client in
            guard follow else {
                let reply = try await client.send(.GET, "/api/v1/tasks/\(pathSegment(id))/logs" + Query.string(parameters))
                try reply.checked()
                Console.raw(reply.text)
                return
            }
            _ = try await LogFollower(client: client, taskID: id, parameters: parameters).run { output in
                if output.stream == "stderr" {
                    FileHandle.standardError.write(Data(output.text.utf8))
                } else {
                    Console.raw(output.text)
                }
            }
        }
    }
}

/// `orchctl task rm ID`
struct TaskRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Cancel a task (its worker stops it); an ended task stays as it is.",
        discussion: """
        Example:
          orchctl task rm 0193b2c4-...
        """,
        aliases: ["cancel", "delete"]
    )

    @Argument(help: "The task's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let task = try await client.send(.DELETE, "/api/v1/tasks/\(pathSegment(id))").checkedJSON()
            options.emit(task) { "task \(id) \(task["state"]?.string ?? "")" }
        }
    }
}
