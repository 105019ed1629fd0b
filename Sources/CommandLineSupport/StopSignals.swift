import UnixSignals

/// SIGTERM and SIGINT as a request to stop gracefully (`docker stop`, Ctrl-C), also when the
/// process is PID 1 in a container, where the kernel ignores signals without a handler.
public enum StopSignals {
    /// Traps both signals (their default action, ending the process at once, no longer applies)
    /// and returns a function that returns when the first one arrives.
    public static func trap() async -> @Sendable () async -> Void {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        return {
            for await _ in signals { return }
        }
    }
}
