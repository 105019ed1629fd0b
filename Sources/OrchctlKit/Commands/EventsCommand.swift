import ArgumentParser
import Foundation

/// `orchctl events`: the cluster's event stream, followed across reconnects and masters.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Follow the cluster's events (task and node changes, leader elections).",
        discussion: """
        Runs until interrupted. When the master it follows goes away, orchctl reconnects (to the \
        next master first) and resumes after the last event it printed, so none is missed or \
        repeated. With -o json, one JSON object a line; with -o yaml, one document per event.

        Example:
          orchctl events --type task_failed,node_down
          orchctl events --since 1200 -o json
        """
    )

    @Option(help: "Start after this event id (a revision such as 1200, or 1200:1); default: from now.")
    var since: String?

    @Option(help: "Only these event types, comma-separated (task_created, task_failed, node_down, ...).")
    var type: String?

    @Option(name: .customLong("reconnect-timeout"), help: "Give up (exit 3) when no master has answered for this many seconds.")
    var reconnectTimeout: Int = 60

    @Flag(help: "Print to stderr which master the stream (re)connected to.")
    var verbose = false

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        if let since, since.split(separator: ":", omittingEmptySubsequences: false).contains(where: { Int64($0) == nil }) {
            throw ValidationError("--since: an event id is a revision such as 1200 or 1200:1, got \"\(since)\"")
        }
        if reconnectTimeout < 1 { throw ValidationError("--reconnect-timeout: at least 1 second") }
    }

    func run() async throws {
        let types = type.map { $0.split(separator: ",").map(String.init) }
        let output = options.output
        let verbose = verbose
        try await withClient(options) { client in
            var follower = EventFollower(client: client, types: types, since: since, reconnectTimeout: .seconds(reconnectTimeout))
            follower.onConnect = { base in if verbose { Console.error("orchctl: following events on \(base)") } }
            try await follower.run { event in
                switch output {
                case .table:
                    Console.out(Views.eventLine(event, now: Age.nowMs))
                case .json:
                    Console.out((JSONValue.parse(event.data) ?? .string(event.data)).jsonText(pretty: false))
                case .yaml:
                    Console.raw("---\n" + YAML.render(JSONValue.parse(event.data) ?? .string(event.data)))
                }
                return true
            }
        }
    }
}

/// `orchctl cluster`: the masters, the leader, term and indexes, and each master's health.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show the masters: leader, term, indexes, store, and each member's health.",
        discussion: """
        Health is each member's /readyz, asked at its API address: ready, not ready (with the \
        master's reason) or unreachable. With -o json or -o yaml, the output is the server's \
        /api/v1/cluster with a `health` object added (member id to health).

        Example:
          orchctl cluster
          orchctl cluster -o json | jq -r .leader_id
          orchctl cluster members
          orchctl cluster snapshot save backup.db
        """,
        subcommands: [MembersCommand.self, SnapshotCommand.self]
    )

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let reply = try await client.send(.GET, "/api/v1/cluster")
            let cluster = try reply.checkedJSON()
            let scheme = reply.master.hasPrefix("https://") ? "https" : "http"
            var health: [String: String] = [:]
            await withTaskGroup(of: (String, String).self) { group in
                for member in cluster["members"]?.array ?? [] {
                    guard let id = member["id"]?.string else { continue }
                    guard let address = member["api_address"]?.string, !address.isEmpty else {
                        group.addTask { (id, "unknown: no API address known yet") }
                        continue
                    }
                    group.addTask { (id, await client.probe("\(scheme)://\(address)/readyz")) }
                }
                for await (id, state) in group { health[id] = state }
            }
            var object = cluster.object ?? [:]
            object["health"] = .object(health.mapValues { .string($0) })
            options.emit(.object(object)) { Views.clusterDescription(cluster, health: health) }
        }
    }
}

extension APIClient {
    /// One master's readiness: "ready", "not ready: <reason>" or "unreachable: <error>".
    func probe(_ url: String) async -> String {
        var request = makeRequest(.GET, base: url, path: "", body: nil, headers: [])
        request.url = url
        do {
            let response = try await http.execute(request, timeout: .seconds(3))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            if response.status.code == 200 { return "ready" }
            if case .refused(_, _, let message) = OrchctlError.fromResponse(status: Int(response.status.code), body: body) {
                return "not ready: \(message)"
            }
            return "not ready"
        } catch {
            return "unreachable: \(Self.describe(error))"
        }
    }
}
