import Foundation
import Synchronization
import Testing
@testable import Raft

/// The node's loop runs on a thread of its own (`ThreadExecutor`), so it keeps stepping while
/// other work holds every thread of the cooperative pool.
@Suite struct ThreadExecutorTests {
    /// Records what the node sends, from whichever thread sends it.
    final class SendRecorder: RaftTransport {
        let sent = Mutex<[Message]>([])
        func send(_ messages: [Message]) { sent.withLock { $0 += messages } }
        func run(onReceive: @escaping @Sendable ([Message]) -> Void, onUnreachable: @escaping @Sendable (NodeID) -> Void) async throws {
            while !Task.isCancelled { try await Task.sleep(for: .seconds(1)) }
        }
    }

    @Test("with every pool thread blocked, the loop still takes ticks and campaigns")
    func loopRunsWhileThePoolIsBlocked() async throws {
        let transport = SendRecorder()
        var options = RaftNode<ContinuousClock>.Options()
        options.tickInterval = .seconds(3600)  // the ticks come from this test
        let runStarted = Count()
        options.onMembershipChange = { _ in runStarted.add() }
        let node = try RaftNode(config: RaftConfig(id: 1), storage: MemoryLogStorage(), machine: RecordingMachine(),
                                transport: transport, bootstrap: [1, 2, 3], clock: ContinuousClock(), options: options)
        let running = Task { try await node.run() }
        defer { running.cancel() }
        // Running, with the founding membership applied (before it, a node does not campaign).
        while runStarted.value == 0 { try await Task.sleep(for: .milliseconds(5)) }
        node.enqueue(.tick)  // the loop handles the bootstrap entries after an event
        while await node.status().confState.voters.isEmpty { try await Task.sleep(for: .milliseconds(5)) }

        // Hold every pool thread: this test's own, and one blocked task for each of the others.
        let width = ProcessInfo.processInfo.activeProcessorCount
        let started = Count()
        let release = DispatchSemaphore(value: 0)
        let blockers = (1..<max(width, 1)).map { _ in
            Task.detached {
                started.add()
                release.wait()
            }
        }
        defer {
            for _ in blockers { release.signal() }
        }
        try Self.waitBlocking("the blockers to hold the pool") { started.value == width - 1 }
        // Past an election timeout of ticks, handed over from this (blocked) thread: the loop
        // must pre-vote on its own thread.
        for _ in 0..<(RaftConfig(id: 1).electionTick * 3) { node.enqueue(.tick) }
        try Self.waitBlocking("the loop to campaign while the pool is held") {
            transport.sent.withLock { $0.contains { $0.kind == .preVote } }
        }
    }

    @Test("jobs run one at a time in order; the thread ends when idle and a later job starts another")
    func serialAndRestarting() async throws {
        actor Counter {
            let executor = ThreadExecutor(name: "test", idleTimeout: .milliseconds(20))
            nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
            var values: [Int] = []
            func append(_ v: Int) { values.append(v) }
        }
        let counter = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<200 { group.addTask { await counter.append(i) } }
        }
        #expect(await counter.values.sorted() == Array(0..<200))
        try await Task.sleep(for: .milliseconds(100))  // past the idle timeout: the thread ends
        await counter.append(200)
        #expect(await counter.values.count == 201)
    }

    final class Count: Sendable {
        private let count = Atomic(0)
        func add() { count.add(1, ordering: .sequentiallyConsistent) }
        var value: Int { count.load(ordering: .sequentiallyConsistent) }
    }

    /// Polls `condition` without suspending (this thread is one of those held), for up to 20 s.
    static func waitBlocking(_ what: String, _ condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            usleep(1_000)
        }
    }
}
