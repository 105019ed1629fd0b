@testable import Orchestrator
import Raft
import Store
import Synchronization
import Testing

/// `ForwardBatcher`: a follower's concurrent writes share calls to the leader, a lone write is sent
/// at once, and every write gets its own answer.
@Suite struct ForwardBatcherTests {
    /// A leader stand-in: records each call's commands and answers each put with its own key,
    /// after `hold` lets it (so calls can be kept in flight while more commands queue).
    final class FakeLeader: Sendable {
        let calls = Mutex<[[Command]]>([])
        let gate = Mutex<[CheckedContinuation<Void, Never>]>([])
        let holding: Bool
        init(holding: Bool) { self.holding = holding }

        func send(_ commands: [ForwardBatcher.EncodedCommand]) async -> [Result<Response, any Error>] {
            calls.withLock { $0.append(commands.map(\.command)) }
            if holding { await withCheckedContinuation { c in gate.withLock { $0.append(c) } } }
            return commands.map { encoded in
                guard case .put(let put) = encoded.command else { return .failure(RaftNodeError.rejected("not a put")) }
                if put.key == Array("fail".utf8) { return .failure(RaftNodeError.notLeader(leader: noNode)) }
                return .success(.put(PutResponse(revision: Int64(put.key.count), prevKV: nil)))
            }
        }

        func release() { for c in gate.withLock({ g in defer { g = [] }; return g }) { c.resume() } }
        var held: Int { gate.withLock { $0.count } }
    }

    static func put(_ key: String, bytes: Int = 1) -> Command {
        .put(PutRequest(key: Array(key.utf8), value: Array(repeating: 7, count: bytes)))
    }

    @Test("a lone write goes at once, alone")
    func loneWrite() async throws {
        let leader = FakeLeader(holding: false)
        let batcher = ForwardBatcher { await leader.send($0) }
        let response = try await batcher.forward(Self.put("abc"))
        #expect(response == .put(PutResponse(revision: 3, prevKV: nil)))
        #expect(leader.calls.withLock { $0.count } == 1)
    }

    @Test("writes that arrive while every slot is in flight share the next call; each gets its own answer")
    func concurrentWritesShareCalls() async throws {
        let leader = FakeLeader(holding: true)
        let batcher = ForwardBatcher(maxInFlight: 2, maxCommands: 50) { await leader.send($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let key = String(repeating: "k", count: 1 + i % 7)
                    let response = try await batcher.forward(Self.put(key))
                    #expect(response == .put(PutResponse(revision: Int64(key.count), prevKV: nil)))
                }
            }
            // Release calls as they come until every write is answered.
            group.addTask {
                let deadline = ContinuousClock.now + .seconds(30)
                while leader.calls.withLock({ $0.flatMap { $0 }.count }) < 200 || leader.held > 0 {
                    #expect(ContinuousClock.now < deadline, "writes still unanswered")
                    if ContinuousClock.now >= deadline { return }
                    leader.release()
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            try await group.waitForAll()
        }
        let calls = leader.calls.withLock { $0 }
        #expect(calls.flatMap { $0 }.count == 200, "every write sent exactly once")
        #expect(calls.allSatisfy { $0.count <= 50 })
        #expect(calls.count < 100, "200 concurrent writes took \(calls.count) calls")
    }

    @Test("a failure answers only its own write")
    func failuresArePerWrite() async throws {
        let leader = FakeLeader(holding: false)
        let batcher = ForwardBatcher { await leader.send($0) }
        await #expect(throws: RaftNodeError.notLeader(leader: noNode)) { _ = try await batcher.forward(Self.put("fail")) }
        #expect(try await batcher.forward(Self.put("ok")) == .put(PutResponse(revision: 2, prevKV: nil)))
    }

    @Test("a call carries at most maxBytes of commands, and a larger command goes alone")
    func bytesBoundACall() async throws {
        let leader = FakeLeader(holding: true)
        let batcher = ForwardBatcher(maxInFlight: 1, maxCommands: 100, maxBytes: 10_000) { await leader.send($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The first write takes the only slot; the rest queue behind it.
            group.addTask { _ = try await batcher.forward(Self.put("first")) }
            let deadline = ContinuousClock.now + .seconds(30)
            while leader.held == 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
            for i in 0..<10 { group.addTask { _ = try await batcher.forward(Self.put("small\(i)", bytes: 3_000)) } }
            group.addTask { _ = try await batcher.forward(Self.put("big", bytes: 50_000)) }
            group.addTask {
                while leader.calls.withLock({ $0.flatMap { $0 }.count }) < 12 || leader.held > 0 {
                    if ContinuousClock.now >= deadline { Issue.record("writes still unanswered"); return }
                    leader.release()
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            try await group.waitForAll()
        }
        let calls = leader.calls.withLock { $0 }
        for call in calls.dropFirst() {
            let bytes = call.map { $0.encoded().count }.reduce(0, +)
            #expect(call.count == 1 || bytes <= 10_000, "a call of \(call.count) commands carried \(bytes) bytes")
        }
        #expect(calls.contains { $0.count == 1 && $0.first == Self.put("big", bytes: 50_000) })
    }
}
