/// When a task is done for good, from its API representation: what `task run --wait` waits for.
public enum TaskLifecycle {
    /// Whether `task` (a task object of the API) will change no more by itself: cancelled, or
    /// completed, failed or lost with no restart left under its restart policy (the master's rule:
    /// `never` restarts nothing, `on-failure` restarts failed and lost tasks, `always` also
    /// completed ones, each while `retries < max_retries`).
    public static func isFinal(_ task: JSONValue) -> Bool {
        guard let state = task["state"]?.string else { return false }
        switch state {
        case "cancelled": return true
        case "completed", "failed", "lost":
            let policy = task["spec"]?["restart_policy"]
            let condition = policy?["condition"]?.string ?? "on-failure"
            let wanted = switch condition {
            case "never": false
            case "on-failure": state != "completed"
            default: true
            }
            guard wanted else { return true }
            let retries = task["retries"]?.int ?? 0
            let maxRetries = policy?["max_retries"]?.int ?? 0
            return retries >= maxRetries
        default:
            return false
        }
    }

    /// The exit code `task run --wait` ends with for a final task: 0 when completed, the task's
    /// own exit code when it failed with one (1-255), else 1.
    public static func exitCode(_ task: JSONValue) -> Int32 {
        switch task["state"]?.string {
        case "completed": return 0
        case "failed":
            if let code = task["exit_code"]?.int, (1...255).contains(code) { return Int32(code) }
            return 1
        default: return 1
        }
    }
}
