import Foundation

/// `-w` for `task ls` and `node ls`: after the list, follow the event stream from the list's
/// revision (so no change between the two is missed) and show each change. On a terminal the
/// table is redrawn in place; otherwise, as `kubectl get -w` does, each changed row is printed
/// as a new line (with `-o json`, the changed object as one JSON line; `-o yaml`, a document).
struct ListWatch {
    /// "task" or "node": the field of an event's data that holds the object.
    var kind: String
    var client: APIClient
    var output: OutputFormat
    /// Whether an object belongs in the list (the command's filters).
    var include: @Sendable (JSONValue) -> Bool
    var table: @Sendable ([JSONValue], Int64) -> Table

    func run(initial: [JSONValue], revision: Int64) async throws {
        var rows: [String: JSONValue] = [:]
        for object in initial { if let id = object["id"]?.string { rows[id] = object } }
        let redraw = output == .table && Colour.enabledOnStdout
        var drawnLines = 0
        func sorted() -> [JSONValue] { rows.keys.sorted().map { rows[$0]! } }
        func draw() {
            let text = rows.isEmpty ? "No \(kind)s." : table(sorted(), Age.nowMs).render()
            // Up to the top of the last drawing, and clear from there down.
            let reset = drawnLines > 0 ? "\u{1B}[\(drawnLines)A\u{1B}[J" : ""
            Console.raw(reset + text + "\n")
            drawnLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
        }
        if redraw { draw() } else if output == .table {
            Console.out(rows.isEmpty ? "No \(kind)s." : table(sorted(), Age.nowMs).render())
        } else {
            for object in sorted() { emitLine(object) }
        }
        let prefix = kind + "_"
        var follower = EventFollower(client: client, types: nil, since: String(revision))
        try await follower.run { event in
            guard event.event.hasPrefix(prefix), let data = JSONValue.parse(event.data) else { return true }
            let object = data[kind] ?? .null
            let id = object["id"]?.string ?? data["id"]?.string ?? ""
            guard !id.isEmpty else { return true }
            let changed: JSONValue?
            if object.isNull || !include(object) {
                // Deleted, or changed out of the filter: gone from the list.
                guard rows.removeValue(forKey: id) != nil else { return true }
                changed = nil
            } else {
                rows[id] = object
                changed = object
            }
            if redraw {
                draw()
            } else if let changed {
                if output == .table {
                    // The changed row, aligned with the table as it now is.
                    let lines = table(sorted(), Age.nowMs).render(colours: Colour.enabledOnStdout).split(separator: "\n")
                    let index = sorted().firstIndex { $0["id"]?.string == id }.map { $0 + 1 } ?? 0
                    if index < lines.count { Console.out(String(lines[index])) }
                } else {
                    emitLine(changed)
                }
            }
            return true
        }
    }

    func emitLine(_ object: JSONValue) {
        switch output {
        case .json: Console.out(object.jsonText(pretty: false))
        case .yaml: Console.raw("---\n" + YAML.render(object))
        case .table: break
        }
    }
}
