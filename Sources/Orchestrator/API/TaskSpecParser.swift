import ClusterModel
import Foundation

/// Limits on what one task may ask for; configurable per cluster.
public struct TaskLimits: Sendable, Hashable {
    public var maxBodyBytes = 1 << 20
    /// 64 cores.
    public var maxCPU = 64_000
    /// 256 GiB.
    public var maxMemory = 262_144
    public var maxNameLength = 253
    public var maxCommandArguments = 4096
    public var maxEnvEntries = 4096

    public init() {}
}

/// Turns a request body into a `TaskSpec`, or an `APIError` that names the field at fault.
/// Decoding by hand (rather than `Decodable`) is what lets every message say which field is wrong
/// and why, and lets unknown fields be refused instead of silently ignored.
public struct TaskSpecParser: Sendable {
    public var limits: TaskLimits

    public init(limits: TaskLimits = TaskLimits()) {
        self.limits = limits
    }

    static let knownFields: Set<String> = ["name", "image", "command", "env", "resources", "restart_policy", "node_selector", "scheduler"]

    public func parse(_ body: [UInt8]) throws(APIError) -> TaskSpec {
        guard body.count <= limits.maxBodyBytes else {
            throw APIError(status: 413, code: "body_too_large", message: "request body is \(body.count) bytes; the limit is \(limits.maxBodyBytes)")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(body), options: [])
        } catch {
            throw APIError(status: 400, code: "invalid_json", message: "the body is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw APIError(status: 400, code: "invalid_json", message: "the body must be a JSON object")
        }
        if let unknown = object.keys.sorted().first(where: { !Self.knownFields.contains($0) }) {
            throw APIError.invalid(unknown, "unknown field")
        }

        let name = try string(object, "name", required: true)!
        // Counted in code points, as JSON Schema's maxLength counts.
        guard !name.isEmpty, name.unicodeScalars.count <= limits.maxNameLength else {
            throw .invalid("name", "must be 1 to \(limits.maxNameLength) characters")
        }
        let image = try string(object, "image", required: true)!
        try Self.validateImage(image)
        let command = try stringArray(object, "command")
        guard command.count <= limits.maxCommandArguments else {
            throw .invalid("command", "at most \(limits.maxCommandArguments) arguments")
        }
        let env = try stringMap(object, "env")
        guard env.count <= limits.maxEnvEntries else { throw .invalid("env", "at most \(limits.maxEnvEntries) entries") }
        for key in env.keys where key.isEmpty || key.contains("=") {
            throw .invalid("env", "variable name \"\(key)\" must be non-empty and without '='")
        }
        let resources = try parseResources(object["resources"])
        let restart = try parseRestartPolicy(object["restart_policy"])
        let selector = try stringMap(object, "node_selector")
        var scheduler: SchedulingAlgorithm?
        if let s = try string(object, "scheduler", required: false) {
            guard let algorithm = SchedulingAlgorithm(rawValue: s) else {
                throw .invalid("scheduler", "unknown scheduler \"\(s)\"; use one of \(SchedulingAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            scheduler = algorithm
        }
        return TaskSpec(name: name, image: image, command: command, env: env, resources: resources,
                        restartPolicy: restart, nodeSelector: selector, scheduler: scheduler)
    }

    func parseResources(_ value: Any?) throws(APIError) -> Resources {
        guard let value, !(value is NSNull) else { return .taskDefault }
        guard let object = value as? [String: Any] else { throw .invalid("resources", "must be an object {\"cpu\", \"memory\"}") }
        if let unknown = object.keys.sorted().first(where: { $0 != "cpu" && $0 != "memory" }) {
            throw .invalid("resources.\(unknown)", "unknown field")
        }
        try Self.refuseNulls(object, in: "resources")
        let cpu = try integer(object, "cpu", path: "resources.cpu") ?? Resources.taskDefault.cpu
        let memory = try integer(object, "memory", path: "resources.memory") ?? Resources.taskDefault.memory
        guard cpu > 0, cpu <= limits.maxCPU else {
            throw .invalid("resources.cpu", "must be between 1 and \(limits.maxCPU) millicores, got \(cpu)")
        }
        guard memory > 0, memory <= limits.maxMemory else {
            throw .invalid("resources.memory", "must be between 1 and \(limits.maxMemory) MB, got \(memory)")
        }
        return Resources(cpu: cpu, memory: memory)
    }

    func parseRestartPolicy(_ value: Any?) throws(APIError) -> RestartPolicy {
        guard let value, !(value is NSNull) else { return RestartPolicy() }
        guard let object = value as? [String: Any] else { throw .invalid("restart_policy", "must be an object") }
        let known: Set<String> = ["condition", "max_retries", "backoff_ms", "max_backoff_ms"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalid("restart_policy.\(unknown)", "unknown field")
        }
        try Self.refuseNulls(object, in: "restart_policy")
        var policy = RestartPolicy()
        if let c = try string(object, "condition", required: false, path: "restart_policy.condition") {
            guard let condition = RestartCondition(rawValue: c) else {
                throw .invalid("restart_policy.condition", "must be never, on-failure or always, got \"\(c)\"")
            }
            policy.condition = condition
        }
        if let n = try integer(object, "max_retries", path: "restart_policy.max_retries") {
            guard (0...1000).contains(n) else { throw .invalid("restart_policy.max_retries", "must be between 0 and 1000") }
            policy.maxRetries = n
        }
        if let n = try integer(object, "backoff_ms", path: "restart_policy.backoff_ms") {
            guard (0...3_600_000).contains(n) else { throw .invalid("restart_policy.backoff_ms", "must be between 0 and 3600000") }
            policy.backoffMs = n
        }
        if let n = try integer(object, "max_backoff_ms", path: "restart_policy.max_backoff_ms") {
            // Below backoff_ms it simply caps every delay (no cross-field rule a schema cannot state).
            guard (0...86_400_000).contains(n) else {
                throw .invalid("restart_policy.max_backoff_ms", "must be between 0 and 86400000")
            }
            policy.maxBackoffMs = n
        }
        return policy
    }

    /// Inside `resources` and `restart_policy`, a field is given or left out: null is refused, as
    /// the document (which lets only the top-level optional fields be null) says.
    static func refuseNulls(_ object: [String: Any], in parent: String) throws(APIError) {
        if let key = object.keys.sorted().first(where: { object[$0] is NSNull }) {
            throw .invalid("\(parent).\(key)", "must not be null; leave the field out for its default")
        }
    }

    // MARK: - Typed field access

    func string(_ object: [String: Any], _ key: String, required: Bool, path: String? = nil) throws(APIError) -> String? {
        let field = path ?? key
        guard let value = object[key], !(value is NSNull) else {
            if required { throw .missing(field) }
            return nil
        }
        guard let s = value as? String else { throw .invalid(field, "must be a string") }
        return s
    }

    func integer(_ object: [String: Any], _ key: String, path: String) throws(APIError) -> Int? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        // JSONSerialization turns true/false into NSNumber too: refuse booleans explicitly.
        guard let number = value as? NSNumber, isNumberNotBool(number) else { throw .invalid(path, "must be an integer") }
        let d = number.doubleValue
        guard d.rounded() == d, abs(d) < 1e15 else { throw .invalid(path, "must be an integer") }
        return Int(d)
    }

    func stringArray(_ object: [String: Any], _ key: String) throws(APIError) -> [String] {
        guard let value = object[key], !(value is NSNull) else { return [] }
        guard let array = value as? [Any] else { throw .invalid(key, "must be an array of strings") }
        var out: [String] = []
        for (i, item) in array.enumerated() {
            guard let s = item as? String else { throw .invalid("\(key)[\(i)]", "must be a string") }
            out.append(s)
        }
        return out
    }

    func stringMap(_ object: [String: Any], _ key: String) throws(APIError) -> [String: String] {
        guard let value = object[key], !(value is NSNull) else { return [:] }
        guard let map = value as? [String: Any] else { throw .invalid(key, "must be an object of strings") }
        var out: [String: String] = [:]
        for (k, v) in map {
            guard let s = v as? String else { throw .invalid("\(key).\(k)", "must be a string") }
            out[k] = s
        }
        return out
    }

    /// A Docker image reference (`ImageReference`). Checked here so that a typo fails at
    /// submission, not later on a worker.
    public static func validateImage(_ image: String) throws(APIError) {
        if let problem = ImageReference.problem(with: image) { throw .invalid("image", problem) }
    }
}

/// Whether an `NSNumber` from JSONSerialization holds a number rather than a boolean.
func isNumberNotBool(_ number: NSNumber) -> Bool {
    // On Linux, JSON booleans decode to NSNumber whose objCType is "c" (char); integers and
    // doubles use other encodings.
    String(cString: number.objCType) != "c"
}
