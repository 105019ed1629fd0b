import ArgumentParser
import Foundation

/// `orchctl cluster members ...`: the masters' membership at runtime (`/api/v1/cluster/members`).
struct MembersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members",
        abstract: "List, add, promote and remove masters while the cluster runs.",
        discussion: """
        One change at a time. A new master is added as a learner (it receives the log without \
        voting) and promoted once caught up; `master --join` does both itself. A change that \
        fails over to another master may already have been made: list the members before \
        retrying it.

        Replacing a failed master m3 (id 3) with m4 at host4:
          orchctl cluster members rm 3
          master --id m4 --join host1:9090 --rpc-addr host4:9090 --api-addr host4:8080 ...
          orchctl cluster members
        """,
        subcommands: [MembersList.self, MembersAdd.self, MembersPromote.self, MembersRemove.self],
        defaultSubcommand: MembersList.self
    )
}

extension Views {
    /// The members as a table: ID, NAME, ROLE (voter or learner), RPC and API addresses.
    static func memberTable(_ members: [JSONValue]) -> Table {
        Table(headers: ["ID", "NAME", "ROLE", "RPC", "API"], rows: members.map { m in
            [Cell(String(m["id"]?.int ?? 0)), Cell(m["name"]?.string ?? ""),
             Cell(m["learner"]?.bool == true ? "learner" : "voter", colour: m["learner"]?.bool == true ? .yellow : nil),
             Cell(m["rpc_address"]?.string ?? ""), Cell(m["api_address"]?.string ?? "")]
        })
    }
}

/// `orchctl cluster members ls`
struct MembersList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the masters (the default).", aliases: ["list"])
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let list = try await client.getJSON("/api/v1/cluster/members")
            options.emit(list) { Views.memberTable(list["members"]?.array ?? []).render() }
        }
    }
}

/// `orchctl cluster members add --rpc HOST:PORT [--name N] [--api HOST:PORT] [--etcd HOST:PORT]`
struct MembersAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add a master as a learner (then start it with --join, or it is already running).")
    @Option(help: "The new master's --rpc-addr as the others reach it (HOST:PORT).") var rpc: String
    @Option(help: "Its --id.") var name: String?
    @Option(help: "Its REST API address (HOST:PORT).") var api: String?
    @Option(help: "Its etcd API address (HOST:PORT).") var etcd: String?
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        var body: [String: String] = ["rpc_address": rpc]
        if let name { body["name"] = name }
        if let api { body["api_address"] = api }
        if let etcd { body["etcd_address"] = etcd }
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        try await withClient(options) { client in
            let member = try await client.send(.POST, "/api/v1/cluster/members", body: data).checkedJSON()
            options.emit(member) { "Added member \(member["id"]?.int ?? 0) (\(member["name"]?.string ?? "")) as a learner." }
        }
    }
}

/// `orchctl cluster members promote ID`
struct MembersPromote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "promote", abstract: "Promote a caught-up learner to voter.")
    @Argument(help: "The member's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let member = try await client.send(.POST, "/api/v1/cluster/members/\(pathSegment(id))/promote").checkedJSON()
            options.emit(member) { "Promoted member \(id) to voter." }
        }
    }
}

/// `orchctl cluster members rm ID`
struct MembersRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove a master (a removed leader steps down; the removed master stops).", aliases: ["remove"])
    @Argument(help: "The member's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            try await client.send(.DELETE, "/api/v1/cluster/members/\(pathSegment(id))").checked()
            options.emit(.object(["removed": .string(id)])) { "Removed member \(id)." }
        }
    }
}
