extension HistoryOperation where Input == KeyValueInput, Output == KeyValueOutput {
    /// The call in words: `put "k" "v1"`, `get "k"`, `cas "k" absent -> "v2"`.
    public var callText: String {
        switch input {
        case .put(let key, let value): "put \(describeValue(key)) \(describeValue(value))"
        case .get(let key): "get \(describeValue(key))"
        case .compareAndSet(let key, let expected, let new): "cas \(describeValue(key)) \(describeValue(expected)) -> \(describeValue(new))"
        }
    }

    /// The answer in words: `ok`, a quoted value or `absent`, `succeeded`, `failed`, or `unknown`
    /// for an operation that timed out.
    public var resultText: String {
        switch output {
        case nil: "unknown"
        case .written: "ok"
        case .read(let value): describeValue(value)
        case .compareAndSet(let succeeded): succeeded ? "succeeded" : "failed"
        }
    }
}

/// A compact text of operations, one line each in call order (ties in the order given), columns
/// aligned: client, call time, return time or `timeout`, the call, the answer. Deterministic, so a
/// report can be compared and pasted into a test.
///
///     client 1  call 0   return 10  put "k" "v1"  ok
///     client 2  call 5   timeout    put "k" "v2"  unknown
///     client 1  call 20  return 30  get "k"       "v2"
public func renderHistory(_ operations: [KeyValueOperation]) -> String {
    let ordered = operations.enumerated().sorted { ($0.element.call, $0.offset) < ($1.element.call, $1.offset) }
    return renderLines(ordered.map(\.element))
}

/// The lines of `renderHistory` in the order given (a linearization, for instance), each after
/// `indent`.
func renderLines(_ operations: [KeyValueOperation], indent: String = "") -> String {
    let rows = operations.map { operation in
        [
            "client \(operation.client)",
            "call \(operation.call)",
            operation.returnTime.map { "return \($0)" } ?? "timeout",
            operation.callText,
            operation.resultText,
        ]
    }
    guard let columnCount = rows.first?.count else { return "" }
    let widths = (0..<columnCount).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        indent + row.enumerated().map { column, text in
            column == columnCount - 1 ? text : text + String(repeating: " ", count: widths[column] - text.count)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}
