/// What confines every task container, set by the worker's operator (`--task-pids-limit`,
/// `--task-log-max-size`, `--task-log-max-files`) and never by a task: the task spec has no field
/// for any of it, and the master refuses unknown fields.
///
/// - `no-new-privileges`: a setuid binary in the image cannot raise the task's privileges.
/// - `PidsLimit`: a fork bomb stops at the limit instead of exhausting the worker's host.
/// - A json-file log capped at `logMaxSize` x `logMaxFiles`: a chatty task cannot fill the disk
///   (the worker reads logs through Docker's API, which json-file serves).
/// - `CapDrop: NET_RAW`: no raw sockets, so a task cannot forge packets (ARP or IP spoofing of
///   its neighbours on the bridge); ordinary TCP/UDP and, on Docker 20.10+, unprivileged `ping`
///   keep working. Other default capabilities stay: images that `chown` or bind low ports need
///   them, and they do not reach beyond the container without a privilege this runtime never grants.
public struct TaskContainerPolicy: Sendable, Equatable {
    /// Processes (threads included) a container may hold.
    public var pidsLimit: Int64
    /// Docker's `max-size` of one log file: digits and an optional unit, `k`, `m` or `g`.
    public var logMaxSize: String
    /// Docker's `max-file`: log files kept (rotated) per container.
    public var logMaxFiles: Int
    /// Capabilities removed from Docker's default set.
    public var capDrop: [String]

    public init(pidsLimit: Int64 = 1024, logMaxSize: String = "10m", logMaxFiles: Int = 3, capDrop: [String] = ["NET_RAW"]) {
        self.pidsLimit = pidsLimit
        self.logMaxSize = logMaxSize
        self.logMaxFiles = logMaxFiles
        self.capDrop = capDrop
    }

    /// Checks operator input before any container is created; the message names the flag.
    public func validate() throws(TaskContainerPolicyError) {
        guard pidsLimit > 0 else { throw .invalid("--task-pids-limit: \(pidsLimit) must be positive") }
        guard Self.isSize(logMaxSize) else {
            throw .invalid("--task-log-max-size: \"\(logMaxSize)\" is not a size such as 10m (digits, then k, m or g)")
        }
        guard logMaxFiles >= 1 else { throw .invalid("--task-log-max-files: \(logMaxFiles) must be at least 1") }
    }

    static func isSize(_ text: String) -> Bool {
        var digits = Substring(text)
        if let last = digits.last, "kmg".contains(last) { digits = digits.dropLast() }
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber } && (UInt64(digits) ?? 0) > 0
    }

    /// The `HostConfig` fields that carry this policy.
    var hostConfig: DockerCreateContainer.HostConfig {
        var host = DockerCreateContainer.HostConfig()
        host.securityOpt = ["no-new-privileges"]
        host.pidsLimit = pidsLimit
        host.logConfig = .init(type: "json-file", config: ["max-size": logMaxSize, "max-file": String(logMaxFiles)])
        host.capDrop = capDrop
        return host
    }
}

/// An operator setting of `TaskContainerPolicy` that Docker would refuse or that makes no sense.
public enum TaskContainerPolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): message
        }
    }
}
