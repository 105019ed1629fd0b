import ArgumentParser
import CommandLineSupport
import Foundation

/// `master`: the master process (`serve`, the default, so `master --id m1 ...` and `master --dev`
/// run a master) and the tools that prepare a cluster (`master tls ...`, `master snapshot ...`).
@main
struct MasterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "A master of the orchestrator: replicated state, scheduling, REST API; and its TLS and backup tooling.",
        discussion: "Without a subcommand, runs a master: `master --dev`, `master --id m1 --peers ...`.",
        subcommands: [ServeCommand.self, TLSCommand.self, SnapshotCommand.self],
        defaultSubcommand: ServeCommand.self)

    /// Parses the command line and runs what it names.
    static func main() async {
        do {
            var command = try parseCommand(Array(CommandLine.arguments.dropFirst()))
            if var server = command as? ServeCommand {
                try await server.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// What `arguments` (without the program name) ask for. The server's flags also come from
    /// `ORCH_` variables (`environment`, by default the process's); the tools' do not, since a
    /// compose file's `ORCH_PEERS` added to `master tls init DIR` would be an unknown flag there.
    static func parseCommand(
        _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> any ParsableCommand {
        let tools = [TLSCommand.configuration.commandName, SnapshotCommand.configuration.commandName]
        guard !tools.contains(arguments.first) else { return try parseAsRoot(arguments) }
        return try parseAsRoot(
            EnvironmentFlags.merge(arguments, flags: ServeCommand.valueFlags, switches: ServeCommand.switchFlags, environment: environment))
    }
}
