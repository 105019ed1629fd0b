/// What a worker says about one of its tasks.
public enum TaskReport: Sendable, Hashable {
    case running
    /// Exited with code 0.
    case completed
    /// Ended badly: a non-zero exit, OOM, an image that cannot be had, a runtime error.
    case failed(exitCode: Int?, reason: String)
    /// Stopped on the worker without the masters asking (killed by hand, say).
    case cancelled(reason: String)
}
