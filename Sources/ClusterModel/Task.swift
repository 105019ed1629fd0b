/// Where a task is in its life (the original design's five states plus cancelled and lost).
public enum TaskState: String, Sendable, Hashable, Codable, CaseIterable {
    case pending, assigned, running, completed, failed, cancelled, lost

    /// The task has ended: nothing runs it until its restart policy, if any, makes it pending again.
    public var isTerminal: Bool {
        switch self {
        case .completed, .failed, .cancelled: true
        case .pending, .assigned, .running, .lost: false
        }
    }

    /// The transitions the masters allow; anything else is a bug or a stale writer.
    public func canMove(to next: TaskState) -> Bool {
        switch (self, next) {
        case (.pending, .assigned), (.pending, .cancelled):
            return true
        case (.assigned, .running), (.assigned, .failed), (.assigned, .pending), (.assigned, .cancelled), (.assigned, .lost),
             (.assigned, .completed):
            return true
        case (.running, .completed), (.running, .failed), (.running, .cancelled), (.running, .lost):
            return true
        case (.running, .pending):
            // A drain hands a running task to another node, once the worker confirmed that the
            // old copy stopped.
            return true
        case (.lost, .pending), (.failed, .pending), (.completed, .pending):
            // Rescheduled by the restart policy (on-failure: lost or failed; always: any ending).
            return true
        default:
            return false
        }
    }
}

/// When a task that ended is started again.
public enum RestartCondition: String, Sendable, Hashable, Codable, CaseIterable {
    case never
    case onFailure = "on-failure"
    case always
}

/// A task's restart policy: which endings restart it, how often, and with what backoff.
public struct RestartPolicy: Sendable, Hashable, Codable {
    public var condition: RestartCondition
    /// Restarts allowed in all (0: none).
    public var maxRetries: Int
    /// First backoff in milliseconds; doubled each retry (with jitter) up to `maxBackoffMs`.
    public var backoffMs: Int
    public var maxBackoffMs: Int

    public init(condition: RestartCondition = .onFailure, maxRetries: Int = 3, backoffMs: Int = 1000, maxBackoffMs: Int = 60000) {
        self.condition = condition
        self.maxRetries = maxRetries
        self.backoffMs = backoffMs
        self.maxBackoffMs = maxBackoffMs
    }

    enum CodingKeys: String, CodingKey {
        case condition
        case maxRetries = "max_retries"
        case backoffMs = "backoff_ms"
        case maxBackoffMs = "max_backoff_ms"
    }
}

/// What a user submits: `POST /api/v1/tasks`.
public struct TaskSpec: Sendable, Hashable, Codable {
    public var name: String
    public var image: String
    public var command: [String]
    public var env: [String: String]
    public var resources: Resources
    public var restartPolicy: RestartPolicy
    public var nodeSelector: [String: String]
    public var scheduler: SchedulingAlgorithm?

    public init(name: String, image: String, command: [String] = [], env: [String: String] = [:],
                resources: Resources = .taskDefault, restartPolicy: RestartPolicy = RestartPolicy(),
                nodeSelector: [String: String] = [:], scheduler: SchedulingAlgorithm? = nil) {
        self.name = name
        self.image = image
        self.command = command
        self.env = env
        self.resources = resources
        self.restartPolicy = restartPolicy
        self.nodeSelector = nodeSelector
        self.scheduler = scheduler
    }

    enum CodingKeys: String, CodingKey {
        case name, image, command, env, resources, scheduler
        case restartPolicy = "restart_policy"
        case nodeSelector = "node_selector"
    }
}
