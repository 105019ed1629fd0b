import ArgumentParser
import Foundation
import Logging

/// Flags also come from the environment: `ORCH_` + the flag's name in upper case with `_` for `-`
/// (`--join-token` <- `ORCH_JOIN_TOKEN`), so a compose file needs no command lines. A flag given
/// on the command line wins over the environment.
public enum EnvironmentFlags {
    /// `arguments` (without the program name) plus `--flag value` for each of `flags` set in the
    /// environment but absent from the arguments. Boolean flags (`switches`) are added when the
    /// variable is `1`, `true` or `yes`.
    public static func merge(_ arguments: [String], flags: [String], switches: [String] = [],
                             environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var result = arguments
        func given(_ flag: String) -> Bool {
            arguments.contains { $0 == "--\(flag)" || $0.hasPrefix("--\(flag)=") }
        }
        for flag in flags where !given(flag) {
            if let value = environment[variable(flag)], !value.isEmpty { result += ["--\(flag)", value] }
        }
        for flag in switches where !given(flag) {
            if let value = environment[variable(flag)]?.lowercased(), ["1", "true", "yes"].contains(value) { result.append("--\(flag)") }
        }
        return result
    }

    public static func variable(_ flag: String) -> String {
        "ORCH_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }
}

/// A command whose flags also come from `ORCH_` environment variables (`master`, `worker`).
public protocol EnvironmentConfigurable: AsyncParsableCommand {
    /// Flags that take a value.
    static var valueFlags: [String] { get }
    /// Flags without a value.
    static var switchFlags: [String] { get }
}

extension EnvironmentConfigurable {
    public static var switchFlags: [String] { [] }

    /// Parses the command line merged with the environment, then runs; errors exit with
    /// ArgumentParser's one-line message and usage.
    public static func mainMergingEnvironment() async {
        let arguments = EnvironmentFlags.merge(Array(CommandLine.arguments.dropFirst()), flags: valueFlags, switches: switchFlags)
        do {
            var command = try parseAsRoot(arguments)
            // Cast to the concrete type so that the async `run` is called, not the synchronous
            // default that only prints the help.
            if var concrete = command as? Self {
                try await concrete.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// Logs to standard error at `level` (trace ... critical; anything else: notice).
    public static func bootstrapLogging(level text: String) {
        let level = Logger.Level(rawValue: text) ?? .notice
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
