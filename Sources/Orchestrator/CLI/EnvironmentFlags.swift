import Foundation

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
