import ArgumentParser
import Foundation

/// `orchctl node ...`
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "List and inspect worker nodes; drain, cordon and uncordon them.",
        discussion: """
        Example:
          orchctl node ls
          orchctl node drain worker-1a2b
        """,
        subcommands: [NodeList.self, NodeGet.self, NodeAction.Drain.self, NodeAction.Cordon.self, NodeAction.Uncordon.self, NodeRemove.self]
    )
}

/// `orchctl node ls`
struct NodeList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List every node.",
        discussion: """
        CPU and MEMORY show allocated/capacity.

        Example:
          orchctl node ls -o yaml
          orchctl node ls -w
        """,
        aliases: ["list"]
    )

    @Flag(name: [.short, .customLong("watch")], help: "After the list, show every change (redrawn in place on a terminal).")
    var watch = false

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let list = try await client.getJSON("/api/v1/nodes")
            let nodes = list["nodes"]?.array ?? []
            if watch {
                let watch = ListWatch(kind: "node", client: client, output: options.output, include: { _ in true },
                                      table: { Views.nodeTable($0, now: $1) })
                try await watch.run(initial: nodes, revision: list["revision"]?.int ?? 0)
                return
            }
            let now = Age.nowMs
            options.emit(list) { nodes.isEmpty ? "No nodes." : Views.nodeTable(nodes, now: now).render() }
        }
    }
}

/// `orchctl node get ID`
struct NodeGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Show one node.",
        discussion: """
        Example:
          orchctl node get worker-1a2b
        """,
        aliases: ["describe"]
    )

    @Argument(help: "The node's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let node = try await client.getJSON("/api/v1/nodes/\(pathSegment(id))")
            let now = Age.nowMs
            options.emit(node) { Views.nodeDescription(node, now: now) }
        }
    }
}

/// `orchctl node rm ID`
struct NodeRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove a node that has no task placed on it (drain it first).",
        discussion: """
        A worker still running as the node joins again as a new node; stop it first to retire the \
        machine. Down nodes are also removed by the leader after --node-purge-after.

        Example:
          orchctl node drain worker-1a2b && orchctl node rm worker-1a2b
        """,
        aliases: ["delete", "remove"]
    )

    @Argument(help: "The node's id.") var id: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            let node = try await client.send(.DELETE, "/api/v1/nodes/\(pathSegment(id))").checkedJSON()
            options.emit(node) { "node \(id) removed" }
        }
    }
}

/// `orchctl node drain|cordon|uncordon ID`: one POST each; repeating one is harmless.
enum NodeAction {
    static func perform(_ action: String, id: String, options: GlobalOptions) async throws {
        try await withClient(options) { client in
            let node = try await client.send(.POST, "/api/v1/nodes/\(pathSegment(id))/\(action)").checkedJSON()
            options.emit(node) {
                "node \(id) \(action == "drain" ? "drained" : action + "ed"): state \(node["state"]?.string ?? ""), schedulable \(node["schedulable"]?.bool == true ? "yes" : "no")"
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drain", abstract: "Take no new tasks on the node, and move its tasks to other nodes.",
            discussion: """
            Example:
              orchctl node drain worker-1a2b
            """
        )
        @Argument(help: "The node's id.") var id: String
        @OptionGroup var options: GlobalOptions
        func run() async throws { try await NodeAction.perform("drain", id: id, options: options) }
    }

    struct Cordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cordon", abstract: "Take no new tasks on the node; its running tasks stay.",
            discussion: """
            Example:
              orchctl node cordon worker-1a2b
            """
        )
        @Argument(help: "The node's id.") var id: String
        @OptionGroup var options: GlobalOptions
        func run() async throws { try await NodeAction.perform("cordon", id: id, options: options) }
    }

    struct Uncordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "uncordon", abstract: "Make the node schedulable again (a drained node returns to ready).",
            discussion: """
            Example:
              orchctl node uncordon worker-1a2b
            """
        )
        @Argument(help: "The node's id.") var id: String
        @OptionGroup var options: GlobalOptions
        func run() async throws { try await NodeAction.perform("uncordon", id: id, options: options) }
    }
}
