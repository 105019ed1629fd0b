import Foundation

/// The tables and descriptions of tasks, nodes, the cluster and events, from the API's JSON.
/// Pure functions of their input and `now` (milliseconds since the epoch), so they are unit-tested.
public enum Views {
    // MARK: Tasks

    public static func taskTable(_ tasks: [JSONValue], now: Int64) -> Table {
        Table(headers: ["ID", "NAME", "STATE", "NODE", "IMAGE", "EXIT", "RESTARTS", "AGE"], rows: tasks.map { t in
            [Cell(t["id"]?.string ?? ""), Cell(t["spec"]?["name"]?.string ?? ""), .state(t["state"]?.string ?? ""),
             Cell(t["node"]?.string ?? "-"), Cell(t["spec"]?["image"]?.string ?? ""),
             Cell(t["exit_code"]?.int.map(String.init) ?? "-"), Cell(String(t["retries"]?.int ?? 0)),
             Cell(Age.format(ms: t["created_at"]?.int ?? 0, now: now))]
        })
    }

    /// `task get`: the task as `kubectl describe` would show it, with the scheduler's placement
    /// explanation (the algorithm, the chosen node's score, and how many nodes each filter removed).
    public static func taskDescription(_ t: JSONValue, now: Int64) -> String {
        let spec = t["spec"] ?? .null
        var fields: [(String, Cell)] = [
            ("ID", Cell(t["id"]?.string ?? "")),
            ("Name", Cell(spec["name"]?.string ?? "")),
            ("State", .state(t["state"]?.string ?? "")),
        ]
        if let reason = t["reason"]?.string, !reason.isEmpty { fields.append(("Reason", Cell(reason))) }
        if let code = t["exit_code"]?.int { fields.append(("Exit code", Cell(String(code)))) }
        if let moving = t["moving"]?.string, !moving.isEmpty { fields.append(("Moving", Cell(moving, colour: .yellow))) }
        fields.append(("Node", Cell(t["node"]?.string ?? "-")))
        fields.append(("Image", Cell(spec["image"]?.string ?? "")))
        let command = (spec["command"]?.array ?? []).compactMap(\.string)
        fields.append(("Command", Cell(command.isEmpty ? "(the image's)" : Shell.join(command))))
        let cpu = spec["resources"]?["cpu"]?.int ?? 0
        let memory = spec["resources"]?["memory"]?.int ?? 0
        fields.append(("Resources", Cell("cpu \(cpu)m, memory \(memory) MB")))
        let policy = spec["restart_policy"] ?? .null
        fields.append(("Restart", Cell("\(policy["condition"]?.string ?? "on-failure") (max \(policy["max_retries"]?.int ?? 0) retries), \(t["retries"]?.int ?? 0) so far")))
        if let scheduler = spec["scheduler"]?.string { fields.append(("Scheduler", Cell(scheduler))) }
        if let env = spec["env"]?.object, !env.isEmpty {
            fields.append(("Env", Cell(env.keys.sorted().map { "\($0)=\(env[$0]?.string ?? "")" }.joined(separator: " "))))
        }
        if let selector = spec["node_selector"]?.object, !selector.isEmpty {
            fields.append(("Selector", Cell(labels(selector))))
        }
        if let notBefore = t["not_before"]?.int { fields.append(("Not before", Cell(Age.format(ms: notBefore, now: now)))) }
        fields.append(("Created", Cell(Age.format(ms: t["created_at"]?.int ?? 0, now: now))))
        fields.append(("Updated", Cell(Age.format(ms: t["updated_at"]?.int ?? 0, now: now))))
        fields.append(("Revision", Cell(String(t["revision"]?.int ?? 0))))
        var text = keyValues(fields)
        if let placement = t["placement"], !placement.isNull {
            let score = placement["score"]?.double.map { String(format: "%.3f", $0) } ?? "-"
            text += "\nPlacement:  node \(placement["node"]?.string ?? "-"), algorithm \(placement["algorithm"]?.string ?? "-"), score \(score)\n"
            let filters = placement["filters"]?.array ?? []
            if filters.isEmpty {
                text += "  (no filters recorded)"
            } else {
                let table = Table(headers: ["FILTER", "NODES REMOVED"], rows: filters.map {
                    [Cell($0["filter"]?.string ?? ""), Cell(String($0["removed"]?.int ?? 0))]
                })
                text += table.render().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
            }
        } else {
            text += "\nPlacement:  not placed yet"
        }
        return text
    }

    // MARK: Nodes

    public static func nodeTable(_ nodes: [JSONValue], now: Int64) -> Table {
        Table(headers: ["ID", "STATE", "SCHEDULABLE", "CPU", "MEMORY", "TASKS", "LABELS", "HEARTBEAT"], rows: nodes.map { n in
            [Cell(n["id"]?.string ?? ""), .state(n["state"]?.string ?? ""),
             Cell(n["schedulable"]?.bool == false ? "no" : "yes", colour: n["schedulable"]?.bool == false ? .yellow : nil),
             Cell(usage(n, "cpu", unit: "m")), Cell(usage(n, "memory", unit: " MB")),
             Cell(String(n["task_count"]?.int ?? 0)), Cell(labels(n["labels"]?.object ?? [:])),
             Cell(Age.format(ms: n["last_heartbeat"]?.int ?? 0, now: now))]
        })
    }

    public static func nodeDescription(_ n: JSONValue, now: Int64) -> String {
        keyValues([
            ("ID", Cell(n["id"]?.string ?? "")),
            ("State", .state(n["state"]?.string ?? "")),
            ("Schedulable", Cell(n["schedulable"]?.bool == false ? "no (cordoned)" : "yes")),
            ("Address", Cell(n["address"]?.string ?? "")),
            ("Labels", Cell(labels(n["labels"]?.object ?? [:]))),
            ("CPU", Cell(usage(n, "cpu", unit: "m") + " allocated, \(n["free"]?["cpu"]?.int ?? 0)m free")),
            ("Memory", Cell(usage(n, "memory", unit: " MB") + " allocated, \(n["free"]?["memory"]?.int ?? 0) MB free")),
            ("Tasks", Cell(String(n["task_count"]?.int ?? 0))),
            ("Heartbeat", Cell(Age.format(ms: n["last_heartbeat"]?.int ?? 0, now: now))),
            ("Revision", Cell(String(n["revision"]?.int ?? 0))),
        ])
    }

    /// "1500/4000m": allocated of capacity.
    static func usage(_ n: JSONValue, _ key: String, unit: String) -> String {
        "\(n["allocated"]?[key]?.int ?? 0)/\(n["capacity"]?[key]?.int ?? 0)\(unit)"
    }

    /// `k=v,k2=v2` sorted, or "-".
    static func labels(_ labels: [String: JSONValue]) -> String {
        labels.isEmpty ? "-" : labels.keys.sorted().map { "\($0)=\(labels[$0]?.string ?? "")" }.joined(separator: ",")
    }

    // MARK: Cluster

    /// `cluster`: who answered, the leader, term and indexes, then each member with its API
    /// address and health (`health[id]`: "ready", "not ready: why" or "unreachable: why").
    public static func clusterDescription(_ c: JSONValue, health: [String: String]) -> String {
        func number(_ key: String) -> String { c[key]?.int.map(String.init) ?? "-" }
        var text = keyValues([
            ("Answered by", Cell(c["node_id"]?.string ?? "")),
            ("Leader", Cell(c["leader_id"]?.string ?? "none", colour: c["leader_id"]?.string == nil ? .red : nil)),
            ("Term", Cell(number("term"))),
            ("Commit index", Cell(number("commit_index"))),
            ("Applied index", Cell(number("applied_index"))),
            ("Revision", Cell(number("revision"))),
            ("Store", Cell(c["store"]?.string ?? "")),
            ("Scheduler", Cell(c["default_scheduler"]?.string ?? "")),
        ])
        let members = (c["members"]?.array ?? []).sorted { ($0["id"]?.string ?? "") < ($1["id"]?.string ?? "") }
        let table = Table(headers: ["MEMBER", "ROLE", "API ADDRESS", "HEALTH"], rows: members.map { m in
            let id = m["id"]?.string ?? ""
            let h = health[id] ?? "-"
            let word = h.split(separator: ":").first.map(String.init) ?? h
            return [Cell(id), .state(m["role"]?.string ?? ""), Cell(m["api_address"]?.string ?? ""), Cell(h, colour: Colour.of(state: word))]
        })
        text += "\n\n" + table.render()
        return text
    }

    // MARK: Events

    /// One line per event: time, id, type, subject and what changed.
    public static func eventLine(_ e: ServerSentEvent, now: Int64, colours: Bool = Colour.enabledOnStdout) -> String {
        let data = JSONValue.parse(e.data) ?? .null
        var subject = ""
        var detail = ""
        if let task = data["task"], !task.isNull {
            subject = "task \(task["id"]?.string ?? "") (\(task["spec"]?["name"]?.string ?? ""))"
            let state = task["state"]?.string ?? ""
            detail = (data["previous_state"]?.string.map { "\($0) -> " } ?? "") + (Colour.of(state: state)?.wrap(state, enabled: colours) ?? state)
            if let node = task["node"]?.string { detail += " on \(node)" }
            if let code = task["exit_code"]?.int { detail += ", exit code \(code)" }
            if let reason = task["reason"]?.string, !reason.isEmpty, reason != "exit code \(task["exit_code"]?.int ?? -1)" {
                detail += " (\(reason))"
            }
        } else if let node = data["node"], !node.isNull {
            subject = "node \(node["id"]?.string ?? "")"
            let state = node["state"]?.string ?? ""
            detail = (data["previous_state"]?.string.map { "\($0) -> " } ?? "") + state
            if node["schedulable"]?.bool == false { detail += ", cordoned" }
        } else if let leader = data["leader"], !leader.isNull {
            subject = "master \(leader["id"]?.string ?? "")"
            detail = "term \(leader["term"]?.int ?? 0)"
        } else if let id = data["id"]?.string {
            subject = id
        }
        // A task's event happened when the task was last updated; others when they arrived.
        let time = timeOfDay(ms: data["task"]?["updated_at"]?.int ?? now)
        let id = (e.id ?? "-").padding(toLength: max(8, (e.id ?? "").count), withPad: " ", startingAt: 0)
        let type = e.event.padding(toLength: max(17, e.event.count), withPad: " ", startingAt: 0)
        return "\(time)  \(id)  \(type)  \(subject)" + (detail.isEmpty ? "" : "  \(detail)")
    }

    /// "HH:MM:SS" in UTC.
    static func timeOfDay(ms: Int64) -> String {
        let s = (ms / 1000) % 86400
        return String(format: "%02d:%02d:%02d", Int(s / 3600), Int(s / 60 % 60), Int(s % 60))
    }

    // MARK: Helpers

    /// `Key:  value` lines with the values aligned.
    static func keyValues(_ fields: [(String, Cell)], colours: Bool = Colour.enabledOnStdout) -> String {
        let width = max(12, (fields.map(\.0.count).max() ?? 0) + 2)
        return fields.map { key, cell in
            (key + ":").padding(toLength: width, withPad: " ", startingAt: 0) + (cell.colour?.wrap(cell.text, enabled: colours) ?? cell.text)
        }.joined(separator: "\n")
    }
}

/// Shell quoting, to show a command as it could be typed.
public enum Shell {
    public static func quote(_ word: String) -> String {
        let safe = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./=:,@%+")
        if !word.isEmpty, word.unicodeScalars.allSatisfy({ safe.contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    public static func join(_ words: [String]) -> String { words.map(quote).joined(separator: " ") }
}
