import ArgumentParser
import Foundation

/// `orchctl`: the command-line client of the orchestrator's REST API.
public struct Orchctl: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "orchctl",
        abstract: "Run tasks and look after the nodes of an orchestrator cluster, through its REST API.",
        discussion: """
        Connection: --master URL[,URL...] (or ORCH_MASTERS; default http://127.0.0.1:8080): when one \
        master does not answer, the next is tried. --token / ORCH_API_TOKEN / --token-file for the API \
        token; --cacert, --cert, --key (or ORCH_CACERT, ORCH_CERT, ORCH_KEY) for TLS. \
        ~/.config/orchctl/config may hold them as key = value lines (masters, token, token-file, \
        cacert, cert, key).

        Exit codes: 0 success, 1 the server refused, 2 usage error, 3 no master reachable.

        Example:
          orchctl --master https://m1:8080,https://m2:8080 --cacert ca.pem task ls
          orchctl --generate-completion-script bash > /etc/bash_completion.d/orchctl
        """,
        subcommands: [TaskCommand.self, NodeCommand.self, EventsCommand.self, ClusterCommand.self]
    )

    public init() {}

    /// Parses and runs `arguments`, printing errors as one line; returns the exit code.
    public static func run(_ arguments: [String]) async -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            return 0
        } catch let error as OrchctlError {
            if case .taskExit(let code) = error { return code }
            Console.error("orchctl: \(error)")
            return error.exitCode
        } catch let error as ExitCode {
            return error.rawValue
        } catch {
            // ArgumentParser's own: help and completion scripts (exit 0), or a usage error.
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { Console.out(message) }
                return 0
            }
            if let message = usageMessage(for: error, fullMessage: message) { Console.error(message) }
            return OrchctlError.usageExitCode
        }
    }

    /// ArgumentParser's message for a usage error, or for anything else (which is not expected
    /// from a command) one line instead of a stack trace.
    static func usageMessage(for error: any Error, fullMessage: String) -> String? {
        fullMessage.isEmpty ? "orchctl: \(error)" : fullMessage
    }
}

/// Writing to stdout and stderr unbuffered (a pipe reader sees the task id while `--wait` still
/// waits).
public enum Console {
    public static func out(_ text: String) {
        raw(text.hasSuffix("\n") ? text : text + "\n")
    }

    /// Without a line break added (task logs print as they are).
    public static func raw(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    public static func error(_ text: String) {
        FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }
}

extension OutputFormat: ExpressibleByArgument {}

/// The options of every command: where the masters are, credentials, output format.
public struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("master"), help: ArgumentHelp("Master URLs, comma-separated, tried in order (env ORCH_MASTERS).", valueName: "url,..."))
    var master: String?

    @Option(help: ArgumentHelp("API token (env ORCH_API_TOKEN).", valueName: "token"))
    var token: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the API token (env ORCH_API_TOKEN_FILE).", valueName: "path"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("CA certificate (PEM) to trust for the masters' HTTPS (env ORCH_CACERT).", valueName: "path"))
    var cacert: String?

    @Option(help: ArgumentHelp("Client certificate (PEM), when the masters require one (env ORCH_CERT).", valueName: "path"))
    var cert: String?

    @Option(help: ArgumentHelp("The client certificate's private key (PEM) (env ORCH_KEY).", valueName: "path"))
    var key: String?

    @Option(name: [.customShort("o"), .customLong("output")], help: "Output format: table, json or yaml.")
    var output: OutputFormat = .table

    public init() {}

    /// The flags as config-file keys (so the three sources merge one way).
    var flagValues: [String: String] {
        ["masters": master, "token": token, "token-file": tokenFile, "cacert": cacert, "cert": cert, "key": key]
            .compactMapValues { $0 }
    }

    /// The connection settings from flags, environment and config file.
    public func settings(environment: [String: String] = ProcessInfo.processInfo.environment) throws(OrchctlError) -> ConnectionSettings {
        try ConnectionSettings.resolve(flags: flagValues, environment: environment, config: try ConfigFile.load(environment: environment))
    }

    public func client() throws(OrchctlError) -> APIClient {
        try APIClient(settings: try settings())
    }

    /// Prints `value` as JSON or YAML, or as `table()` renders it.
    func emit(_ value: JSONValue, table: () -> String) {
        switch output {
        case .json: Console.out(value.jsonText())
        case .yaml: Console.raw(YAML.render(value))
        case .table: Console.out(table())
        }
    }
}

/// Runs `body` with a client and shuts the client down after, whatever happens.
func withClient<T>(_ options: GlobalOptions, _ body: (APIClient) async throws -> T) async throws -> T {
    let client = try options.client()
    do {
        let result = try await body(client)
        await client.shutdown()
        return result
    } catch {
        await client.shutdown()
        throw error
    }
}

/// A path segment for an id typed by the user.
func pathSegment(_ id: String) -> String {
    id.addingPercentEncoding(withAllowedCharacters: Query.unreserved.subtracting(CharacterSet(charactersIn: ","))) ?? id
}
