import ClusterModel
import Foundation
import Synchronization

/// The master's wall clock (milliseconds since 1970): what records say (creation and update
/// times, heartbeat stamps, restart backoffs, lease expiries).
///
/// A fault-injection hook, in the spirit of etcd's failpoints: when the environment names a file
/// in `ORCH_FAULT_CLOCK_OFFSET_FILE`, this master's wall clock is the system's plus the offset in
/// milliseconds that file holds (an integer, `-120000` or `3600000`; read again at most every
/// 100 ms), so a fault test can step one master's clock without stepping the machine's, which
/// every other process on it shares. Monotonic clocks are never offset: a stepped wall clock must
/// change nothing that is timed, and the test checks exactly that.
public enum WallClock {
    /// The environment variable of the fault hook.
    public static let offsetFileVariable = "ORCH_FAULT_CLOCK_OFFSET_FILE"

    /// The system clock, or the system clock with the hook's offset when `environment` sets it.
    public static func make(environment: [String: String] = ProcessInfo.processInfo.environment) -> @Sendable () -> Int64 {
        guard let path = environment[offsetFileVariable], !path.isEmpty else { return system }
        let offset = SteppedOffset(path: path)
        return { system() + offset.current() }
    }

    /// A clock for lease expiry that no wall-clock step moves: milliseconds since 1970 as the
    /// system clock read when this was made, advanced by the monotonic clock since. Masters'
    /// readings agree as far as their clocks agreed when they started; only the leader's decides
    /// expiry, and a new leader renews every lease first (`LeaseExpirer`), so a difference never
    /// shortens a lease. etcd's lessor likewise times leases on Go's monotonic clock.
    public static func steady() -> @Sendable () -> Int64 {
        let origin = system()
        let start = ContinuousClock.now
        return {
            origin + start.duration(to: .now).wholeMilliseconds
        }
    }

    /// Milliseconds since 1970 from the system clock.
    public static let system: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}

/// The offset of `WallClock`'s fault hook, cached for 100 ms of monotonic time.
final class SteppedOffset: Sendable {
    let path: String
    private let cache = Mutex<(offset: Int64, readAt: ContinuousClock.Instant?)>((0, nil))

    init(path: String) {
        self.path = path
    }

    func current() -> Int64 {
        let now = ContinuousClock.now
        return cache.withLock { cache in
            if let readAt = cache.readAt, readAt.duration(to: now) < .milliseconds(100) { return cache.offset }
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            cache = (Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? cache.offset, now)
            return cache.offset
        }
    }
}
