import ClusterModel

/// The stored records' JSON written and read by hand (`JSONByteWriter`/`JSONByteReader`): the same
/// text `JSONEncoder` with `.sortedKeys` writes for their `Codable` conformances (keys below are in
/// that order), and the same meaning when read: required keys must be there, optional ones may be
/// missing or null, unknown keys are skipped. `RecordJSONTests` holds both sides against
/// `JSONEncoder`/`JSONDecoder` on random records.

/// A record with a hand-written JSON form; `ClusterRepository` uses it in place of `Codable`.
protocol HandWrittenJSON {
    /// Writes the record as one JSON value.
    func write(to writer: inout JSONByteWriter)
    /// Reads one JSON value; throws at anything unexpected (the caller then tries `JSONDecoder`).
    init(reading reader: inout JSONByteReader) throws
}

extension HandWrittenJSON {
    /// The record's JSON text.
    var jsonBytes: [UInt8] {
        var writer = JSONByteWriter()
        write(to: &writer)
        return writer.bytes
    }

    /// The record in `bytes`, which must hold exactly one JSON value.
    init(jsonBytes bytes: [UInt8]) throws {
        var reader = JSONByteReader(bytes)
        try self.init(reading: &reader)
        try reader.end()
    }
}

/// A required key that was not there.
private func required<T>(_ value: T?, _ key: String) throws -> T {
    guard let value else { throw JSONByteReaderError(offset: 0, what: "missing \(key)") }
    return value
}

extension Resources: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("cpu"); w.integer(cpu)
        w.key("memory"); w.integer(memory)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var cpu: Int?, memory: Int?
        try r.object { r, key in
            switch key {
            case "cpu": cpu = try r.integer()
            case "memory": memory = try r.integer()
            default: try r.skip()
            }
        }
        self.init(cpu: try required(cpu, "cpu"), memory: try required(memory, "memory"))
    }
}

extension RestartPolicy: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("backoff_ms"); w.integer(backoffMs)
        w.key("condition"); w.string(condition.rawValue)
        w.key("max_backoff_ms"); w.integer(maxBackoffMs)
        w.key("max_retries"); w.integer(maxRetries)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var condition: RestartCondition?, maxRetries: Int?, backoffMs: Int?, maxBackoffMs: Int?
        try r.object { r, key in
            switch key {
            case "backoff_ms": backoffMs = try r.integer()
            case "condition": condition = try r.rawValue(RestartCondition.self)
            case "max_backoff_ms": maxBackoffMs = try r.integer()
            case "max_retries": maxRetries = try r.integer()
            default: try r.skip()
            }
        }
        self.init(condition: try required(condition, "condition"), maxRetries: try required(maxRetries, "max_retries"),
                  backoffMs: try required(backoffMs, "backoff_ms"), maxBackoffMs: try required(maxBackoffMs, "max_backoff_ms"))
    }
}

extension TaskSpec: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("command"); w.stringArray(command)
        w.key("env"); w.stringMap(env)
        w.key("image"); w.string(image)
        w.key("name"); w.string(name)
        w.key("node_selector"); w.stringMap(nodeSelector)
        w.key("resources"); resources.write(to: &w)
        w.key("restart_policy"); restartPolicy.write(to: &w)
        if let scheduler { w.key("scheduler"); w.string(scheduler.rawValue) }
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var name: String?, image: String?, command: [String]?, env: [String: String]?, resources: Resources?
        var restartPolicy: RestartPolicy?, nodeSelector: [String: String]?, scheduler: SchedulingAlgorithm?
        try r.object { r, key in
            switch key {
            case "command": command = try r.stringArray()
            case "env": env = try r.stringMap()
            case "image": image = try r.string()
            case "name": name = try r.string()
            case "node_selector": nodeSelector = try r.stringMap()
            case "resources": resources = try Resources(reading: &r)
            case "restart_policy": restartPolicy = try RestartPolicy(reading: &r)
            case "scheduler": scheduler = try r.optional { try $0.rawValue(SchedulingAlgorithm.self) }
            default: try r.skip()
            }
        }
        self.init(name: try required(name, "name"), image: try required(image, "image"), command: try required(command, "command"),
                  env: try required(env, "env"), resources: try required(resources, "resources"),
                  restartPolicy: try required(restartPolicy, "restart_policy"), nodeSelector: try required(nodeSelector, "node_selector"),
                  scheduler: scheduler)
    }
}

extension FilterOutcome: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("filter"); w.string(filter)
        w.key("removed"); w.integer(removed)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var filter: String?, removed: Int?
        try r.object { r, key in
            switch key {
            case "filter": filter = try r.string()
            case "removed": removed = try r.integer()
            default: try r.skip()
            }
        }
        self.init(filter: try required(filter, "filter"), removed: try required(removed, "removed"))
    }
}

extension PlacementRecord: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("algorithm"); w.string(algorithm.rawValue)
        w.key("filters")
        w.beginArray()
        for filter in filters { filter.write(to: &w) }
        w.endArray()
        w.key("node"); w.string(node)
        w.key("score"); w.double(score)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var node: String?, score: Double?, algorithm: SchedulingAlgorithm?, filters: [FilterOutcome]?
        try r.object { r, key in
            switch key {
            case "algorithm": algorithm = try r.rawValue(SchedulingAlgorithm.self)
            case "filters":
                var list: [FilterOutcome] = []
                try r.array { list.append(try FilterOutcome(reading: &$0)) }
                filters = list
            case "node": node = try r.string()
            case "score": score = try r.double()
            default: try r.skip()
            }
        }
        self.init(node: try required(node, "node"), score: try required(score, "score"),
                  algorithm: try required(algorithm, "algorithm"), filters: try required(filters, "filters"))
    }
}

extension TaskRecord: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        write(to: &w, revision: nil)
    }

    /// The record, and with `revision` that key too (as the API's `TaskView` shows it).
    func write(to w: inout JSONByteWriter, revision: Int64?) {
        w.beginObject()
        w.key("created_at"); w.integer(createdAt)
        w.key("epoch"); w.integer(epoch)
        if let exitCode { w.key("exit_code"); w.integer(exitCode) }
        w.key("id"); w.string(id)
        if let moving { w.key("moving"); w.string(moving) }
        if let node { w.key("node"); w.string(node) }
        if let notBefore { w.key("not_before"); w.integer(notBefore) }
        if let placement { w.key("placement"); placement.write(to: &w) }
        w.key("reason"); w.string(reason)
        w.key("retries"); w.integer(retries)
        if let revision { w.key("revision"); w.integer(revision) }
        if let runtimeStartMs { w.key("runtime_start_ms"); w.integer(runtimeStartMs) }
        w.key("spec"); spec.write(to: &w)
        w.key("state"); w.string(state.rawValue)
        w.key("updated_at"); w.integer(updatedAt)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var id: String?, spec: TaskSpec?, state: TaskState?, node: String?, epoch: UInt64?, retries: Int?, reason: String?
        var exitCode: Int?, placement: PlacementRecord?, notBefore: Int64?, moving: String?, runtimeStartMs: Int64?
        var createdAt: Int64?, updatedAt: Int64?
        try r.object { r, key in
            switch key {
            case "created_at": createdAt = try r.integer()
            case "epoch": epoch = try r.integer()
            case "exit_code": exitCode = try r.optional { try $0.integer() }
            case "id": id = try r.string()
            case "moving": moving = try r.optional { try $0.string() }
            case "node": node = try r.optional { try $0.string() }
            case "not_before": notBefore = try r.optional { try $0.integer() }
            case "placement": placement = try r.optional { try PlacementRecord(reading: &$0) }
            case "reason": reason = try r.string()
            case "retries": retries = try r.integer()
            case "runtime_start_ms": runtimeStartMs = try r.optional { try $0.integer() }
            case "spec": spec = try TaskSpec(reading: &r)
            case "state": state = try r.rawValue(TaskState.self)
            case "updated_at": updatedAt = try r.integer()
            default: try r.skip()
            }
        }
        self.init(id: try required(id, "id"), spec: try required(spec, "spec"), state: try required(state, "state"),
                  now: try required(createdAt, "created_at"))
        self.node = node
        self.epoch = try required(epoch, "epoch")
        self.retries = try required(retries, "retries")
        self.reason = try required(reason, "reason")
        self.exitCode = exitCode
        self.placement = placement
        self.notBefore = notBefore
        self.moving = moving
        self.runtimeStartMs = runtimeStartMs
        self.updatedAt = try required(updatedAt, "updated_at")
    }
}

extension NodeInfo: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("allocated"); allocated.write(to: &w)
        w.key("capacity"); capacity.write(to: &w)
        w.key("id"); w.string(id)
        w.key("labels"); w.stringMap(labels)
        w.key("schedulable"); w.bool(schedulable)
        w.key("state"); w.string(state.rawValue)
        w.key("taskCount"); w.integer(taskCount)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var id: String?, state: NodeState?, schedulable: Bool?, labels: [String: String]?
        var capacity: Resources?, allocated: Resources?, taskCount: Int?
        try r.object { r, key in
            switch key {
            case "allocated": allocated = try Resources(reading: &r)
            case "capacity": capacity = try Resources(reading: &r)
            case "id": id = try r.string()
            case "labels": labels = try r.stringMap()
            case "schedulable": schedulable = try r.bool()
            case "state": state = try r.rawValue(NodeState.self)
            case "taskCount": taskCount = try r.integer()
            default: try r.skip()
            }
        }
        self.init(id: try required(id, "id"), state: try required(state, "state"), schedulable: try required(schedulable, "schedulable"),
                  labels: try required(labels, "labels"), capacity: try required(capacity, "capacity"),
                  allocated: try required(allocated, "allocated"), taskCount: try required(taskCount, "taskCount"))
    }
}

extension NodeRecord: HandWrittenJSON {
    func write(to w: inout JSONByteWriter) {
        w.beginObject()
        w.key("address"); w.string(address)
        if let credentialDigest { w.key("credential_sha256"); w.string(credentialDigest) }
        w.key("info"); info.write(to: &w)
        w.key("last_heartbeat"); w.integer(lastHeartbeat)
        w.endObject()
    }

    init(reading r: inout JSONByteReader) throws {
        var info: NodeInfo?, address: String?, lastHeartbeat: Int64?, credentialDigest: String?
        try r.object { r, key in
            switch key {
            case "address": address = try r.string()
            case "credential_sha256": credentialDigest = try r.optional { try $0.string() }
            case "info": info = try NodeInfo(reading: &r)
            case "last_heartbeat": lastHeartbeat = try r.integer()
            default: try r.skip()
            }
        }
        self.init(info: try required(info, "info"), address: try required(address, "address"),
                  lastHeartbeat: try required(lastHeartbeat, "last_heartbeat"), credentialDigest: credentialDigest)
    }
}
