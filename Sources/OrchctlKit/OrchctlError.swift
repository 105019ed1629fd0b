import Foundation

/// Every way a command can fail, each with its exit code. Printed as one line,
/// `orchctl: <message>`, never as a stack trace.
public enum OrchctlError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The server answered and refused (a 4xx or 5xx): its `error.message`. Exit 1.
    case refused(status: Int, code: String, message: String)
    /// The command line, the environment or the config file is wrong. Exit 2.
    case usage(String)
    /// No master answered. Exit 3.
    case unreachable(String)
    /// `task run --wait`: the task ended with this exit code (not an error of orchctl's; printed
    /// by the command itself).
    case taskExit(Int32)

    public static let refusedExitCode: Int32 = 1
    public static let usageExitCode: Int32 = 2
    public static let unreachableExitCode: Int32 = 3

    public var exitCode: Int32 {
        switch self {
        case .refused: Self.refusedExitCode
        case .usage: Self.usageExitCode
        case .unreachable: Self.unreachableExitCode
        case .taskExit(let code): code
        }
    }

    /// The line printed after `orchctl: ` (newlines folded: one error, one line).
    public var description: String {
        let text: String
        switch self {
        case .refused(_, _, let message): text = message
        case .usage(let message): text = message
        case .unreachable(let message): text = message
        case .taskExit(let code): text = "the task exited with code \(code)"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// The refusal an error answer stands for: its `{"error":{"code","message"}}`, or the status
    /// and the start of the body when the body is not that (a proxy's page, say).
    public static func fromResponse(status: Int, body: String) -> OrchctlError {
        if let error = JSONValue.parse(body)?["error"], let message = error["message"]?.string {
            return .refused(status: status, code: error["code"]?.string ?? "", message: message)
        }
        let first = body.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        let snippet = first.count > 200 ? String(first.prefix(200)) + "…" : first
        return .refused(status: status, code: "", message: "HTTP \(status)" + (snippet.isEmpty ? "" : ": \(snippet)"))
    }
}
