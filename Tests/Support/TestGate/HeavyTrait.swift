import Testing

/// One at a time, across every test target of the package (they run in one process): the suites
/// that start clusters of processes, real etcd, Docker containers, or drive sustained load.
///
/// On CI's 2 cores, two such suites side by side starve each other's timers (elections, leases,
/// heartbeats) and fail for want of CPU rather than for a bug; unit suites still run in parallel
/// next to the one heavy suite running.
actor HeavyGate {
    static let shared = HeavyGate()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

/// `@Suite(.heavy)`: the suite runs while no other heavy suite does.
public struct HeavyTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { false }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await HeavyGate.shared.acquire()
        do {
            try await function()
        } catch {
            await HeavyGate.shared.release()
            throw error
        }
        await HeavyGate.shared.release()
    }
}

extension Trait where Self == HeavyTrait {
    /// Runs the suite (or test) alone among the heavy ones: see `HeavyGate`.
    public static var heavy: Self { HeavyTrait() }
}
