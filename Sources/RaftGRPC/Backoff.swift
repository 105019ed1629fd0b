import Raft

/// How long a sender waits between attempts to (re)open its stream to a peer.
///
/// Delays start at `initial`, grow by `multiplier` per failed attempt up to `maximum`, and are
/// spread by ±`jitter` (a fraction) so that the servers of a cluster that lost the same peer do not
/// all retry in lock step. The jitter comes from a seeded generator: a run is reproducible.
public struct BackoffPolicy: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double
    /// Fraction of the delay added or removed at random, in `0...1`.
    public var jitter: Double

    public init(initial: Duration, maximum: Duration, multiplier: Double, jitter: Double) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// 50 ms doubling to 1 s, ±20 %: a restarted peer is found again within about a second, which
    /// is well under Raft's election timeout, while a dead one costs one connect attempt per second.
    public static let raftDefault = BackoffPolicy(
        initial: .milliseconds(50), maximum: .seconds(1), multiplier: 2, jitter: 0.2)
}

/// The state of one backoff sequence: `next()` yields the delay before the coming attempt.
struct Backoff: Sendable {
    let policy: BackoffPolicy
    private var base: Double  // seconds, before jitter
    private var random: SplitMix64

    init(policy: BackoffPolicy, seed: UInt64) {
        self.policy = policy
        self.base = policy.initial.seconds
        self.random = SplitMix64(seed: seed)
    }

    /// The delay to wait now; the following call returns a longer one, up to the maximum.
    mutating func next() -> Duration {
        let current = base
        base = min(base * max(policy.multiplier, 1), policy.maximum.seconds)
        let jitter = min(max(policy.jitter, 0), 1)
        // Uniform in [0, 1) from the top 53 bits.
        let unit = Double(random.next() >> 11) * 0x1.0p-53
        let factor = 1 + jitter * (2 * unit - 1)
        return .nanoseconds(Int64(max(current * factor, 0) * 1e9))
    }

    /// Called once a stream is established: the next outage starts from the initial delay again.
    mutating func reset() {
        base = policy.initial.seconds
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }
}
