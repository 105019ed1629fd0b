import Foundation
import Raft
import Testing
@testable import Store

/// A snapshot that the state machine cannot restore is refused before it reaches the disk: the node
/// keeps serving, and it starts again from what it had (review 2889c12, finding 1: a garbage
/// snapshot was saved first, then failed the node on this and every later start).
@Suite struct SnapshotRefusalTests {
    private func openNode(_ path: String, network: InMemoryNetwork, machine: KVStateMachine) throws -> RaftNode<ContinuousClock> {
        var options = RaftNode<ContinuousClock>.Options()
        options.tickInterval = .milliseconds(10)
        return try RaftNode(config: RaftConfig(id: 1), storage: SQLiteLogStorage(path: path), machine: machine,
                            transport: network.transport(for: 1), bootstrap: [1], clock: ContinuousClock(),
                            options: options)
    }

    /// 45 s: at the start of a full run on CI's 2 cores the node's ticks can wait many seconds
    /// for a pool thread (the in-memory Raft clusters of RaftNodeTests wait as long).
    private func waitUntil(_ what: String, within timeout: Duration = .seconds(45),
                           _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !(await condition()) {
            guard ContinuousClock.now < deadline else { throw RaftNodeError.timeout }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("a garbage snapshot from a peer is refused; the node keeps serving and restarts cleanly")
    func garbageSnapshotRefused() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snapshot-refusal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("raft.sqlite").path
        let network = InMemoryNetwork()
        do {
            let node = try openNode(path, network: network, machine: KVStateMachine())
            let task = Task { try await node.run() }
            defer { task.cancel() }
            try await waitUntil("node 1 leads") { await node.status().role == .leader }
            _ = try await node.propose(Command.put(PutRequest(key: Array("a".utf8), value: Array("1".utf8))).encoded())
            let term = await node.status().term
            // From a "peer" with a higher term: stepped, this would make node 1 follow it and save
            // the image before restoring it.
            let garbage = Snapshot(metadata: SnapshotMetadata(index: 1_000, term: term + 5, confState: ConfState(voters: [1, 2])),
                                   data: Array(repeating: 0xAB, count: 4096))
            network.transport(for: 2).send([Message(kind: .snapshot, from: 2, to: 1, term: term + 5, snapshot: garbage)])
            try await waitUntil("the snapshot is refused") { await node.status().snapshotsRefused == 1 }
            let status = await node.status()
            #expect(status.role == .leader && status.term == term, "the refused message changed nothing")
            _ = try await node.propose(Command.put(PutRequest(key: Array("b".utf8), value: Array("2".utf8))).encoded())
            task.cancel()
            _ = await task.result
        }
        // The restart loads what was saved; no snapshot at 1,000 is among it.
        let machine = KVStateMachine()
        let node = try openNode(path, network: InMemoryNetwork(), machine: machine)
        let task = Task { try await node.run() }
        defer { task.cancel() }
        try await waitUntil("node 1 leads again") { await node.status().role == .leader }
        try await node.linearizableRead()
        #expect(await node.status().snapshotIndex == 0)
        #expect(machine.read { $0.get(Array("b".utf8))?.value } == Array("2".utf8))
    }
}
