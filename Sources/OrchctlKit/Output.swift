import Foundation

/// How a command prints its result: `-o table` (the default, for people), `-o json` or `-o yaml`
/// (for scripts: exactly what the server returned).
public enum OutputFormat: String, Sendable, CaseIterable {
    case table, json, yaml
}

/// Terminal colours, used only when stdout is a terminal (and `NO_COLOR` is unset).
public enum Colour: String, Sendable {
    case red = "31", green = "32", yellow = "33", blue = "34", grey = "90", bold = "1"

    /// Whether colours go to stdout: a terminal, and no `NO_COLOR` (https://no-color.org).
    public static let enabledOnStdout: Bool =
        isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

    public func wrap(_ text: String, enabled: Bool = Colour.enabledOnStdout) -> String {
        enabled && !text.isEmpty ? "\u{1B}[\(rawValue)m\(text)\u{1B}[0m" : text
    }

    /// The colour of a task or node state: green when well, yellow while on the way, red when not.
    public static func of(state: String) -> Colour? {
        switch state {
        case "running", "completed", "ready", "leader": .green
        case "pending", "assigned", "not_ready", "draining", "candidate": .yellow
        case "failed", "lost", "down", "unreachable", "not ready": .red
        case "cancelled": .grey
        default: nil
        }
    }
}

/// One cell of a table: its text, and the colour it is shown in on a terminal.
public struct Cell: Sendable, Hashable, ExpressibleByStringLiteral {
    public var text: String
    public var colour: Colour?

    public init(_ text: String, colour: Colour? = nil) {
        self.text = text
        self.colour = colour
    }

    public init(stringLiteral value: String) { self.init(value) }

    /// A state, coloured by `Colour.of(state:)`.
    public static func state(_ state: String) -> Cell { Cell(state, colour: Colour.of(state: state)) }
}

/// An aligned table in the style of `kubectl get`: upper-case headers, columns padded to their
/// widest cell and separated by three spaces, no trailing blanks. Widths count characters, not
/// colour codes, so colours never break the alignment.
public struct Table: Sendable {
    public var headers: [String]
    public var rows: [[Cell]]

    public init(headers: [String], rows: [[Cell]] = []) {
        self.headers = headers
        self.rows = rows
    }

    public func render(colours: Bool = Colour.enabledOnStdout) -> String {
        let all = [headers.map { Cell($0) }] + rows
        var widths = [Int](repeating: 0, count: headers.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.text.count) }
        }
        var lines: [String] = []
        for row in all {
            var line = ""
            for (i, cell) in row.enumerated() where i < widths.count {
                let last = i == row.count - 1 || i == widths.count - 1
                let padded = last ? cell.text : cell.text + String(repeating: " ", count: widths[i] - cell.text.count + 3)
                let shown = cell.colour.map { $0.wrap(cell.text, enabled: colours) + String(padded.dropFirst(cell.text.count)) } ?? padded
                line += shown
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// Relative times, as `kubectl` shows them: "12s ago", "5m ago", "3h ago", "2d ago".
public enum Age {
    /// The age of `ms` (milliseconds since the epoch) at `now`; "-" for 0 (never) and "in 5s" for
    /// a time ahead of this machine's clock by more than a second.
    public static func format(ms: Int64, now: Int64) -> String {
        guard ms > 0 else { return "-" }
        let delta = now - ms
        if delta < -1000 { return "in " + span(-delta) }
        return span(max(delta, 0)) + " ago"
    }

    /// A duration: seconds below 2 minutes, then minutes below 2 hours, then hours below 2 days,
    /// then days (one unit, rounded down, as a glance needs no more).
    public static func span(_ ms: Int64) -> String {
        let s = ms / 1000
        if s < 120 { return "\(s)s" }
        if s < 7200 { return "\(s / 60)m" }
        if s < 172_800 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }

    /// Milliseconds since the epoch, now.
    public static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

/// YAML 1.2 text for a JSON value (`-o yaml`): block style, sorted keys, strings quoted whenever a
/// YAML reader could take them for something else (numbers, booleans, null, `key: value`).
public enum YAML {
    public static func render(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let o) where !o.isEmpty: writeObject(o, indent: 0, into: &out)
        case .array(let a) where !a.isEmpty: writeArray(a, indent: 0, into: &out)
        default: out = scalar(value) + "\n"
        }
        return out
    }

    static func writeObject(_ o: [String: JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for key in o.keys.sorted() {
            let value = o[key]!
            out += pad + quoteIfNeeded(key) + ":"
            switch value {
            case .object(let child) where !child.isEmpty:
                out += "\n"
                writeObject(child, indent: indent + 2, into: &out)
            case .array(let items) where !items.isEmpty:
                out += "\n"
                writeArray(items, indent: indent, into: &out)
            default:
                out += " " + scalar(value) + "\n"
            }
        }
    }

    /// Items of a sequence at `indent` (a sequence under a key sits at the key's indent, as
    /// kubectl writes it).
    static func writeArray(_ a: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in a {
            switch item {
            case .object(let o) where !o.isEmpty:
                var nested = ""
                writeObject(o, indent: indent + 2, into: &nested)
                // The first line of the mapping goes on the dash's line.
                out += pad + "- " + nested.dropFirst(indent + 2)
            case .array(let inner) where !inner.isEmpty:
                out += pad + "-\n"
                writeArray(inner, indent: indent + 2, into: &out)
            default:
                out += pad + "- " + scalar(item) + "\n"
            }
        }
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .int(let i): String(i)
        case .double(let d): d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : String(d)
        case .string(let s): quoteIfNeeded(s)
        case .array: "[]"
        case .object: "{}"
        }
    }

    static let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]

    /// `s` bare when that reads back as the same string, else double-quoted with JSON escapes
    /// (a double-quoted JSON string is a valid YAML scalar).
    static func quoteIfNeeded(_ s: String) -> String {
        let needs = s.isEmpty
            || reserved.contains(s.lowercased())
            || Double(s) != nil || Int(s) != nil || s.hasPrefix("0x") || s.hasPrefix("0o")
            || s.first!.isWhitespace || s.last!.isWhitespace
            || "-?:,[]{}#&*!|>'\"%@`".contains(s.first!)
            || s.contains(": ") || s.contains(" #") || s.hasSuffix(":")
            || s.contains(where: { $0.isNewline || $0 == "\t" || ($0.asciiValue.map { $0 < 0x20 } ?? false) })
        guard needs else { return s }
        return JSONValue.string(s).jsonText(pretty: false)
    }
}
