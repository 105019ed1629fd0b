import ClusterProto
import GRPCCore
import Logging
import Store
import Testing
@testable import Orchestrator

/// `maxAssignmentStreams`: each stream holds a store watch and a worker's task set, so a master
/// serves a bounded number; one more is refused before the store is read.
@Suite struct AssignmentStreamLimitTests {
    @Test("past maxAssignmentStreams a stream is refused with RESOURCE_EXHAUSTED; an ended one frees its slot")
    func streamCap() async throws {
        let repo = ClusterRepository(store: MemoryStore())
        let service = WorkerService(repository: repo, joinToken: "secret", now: { 1_000 }, logger: Logger(label: "test"),
                                    maxAssignmentStreams: 1)
        let credential = try await service.join(request: WorkerServiceTests.request(token: "secret", id: "w1"),
                                                context: .testing).nodeCredential
        let request = Orchestrator_V1_AssignmentsRequest.with { $0.nodeID = "w1"; $0.nodeCredential = credential }
        let first = Collected()
        let open = Task { try await service.assignments(request: request, response: RPCWriter(wrapping: first), context: .testing) }
        try await poll(timeout: .seconds(60), "the first stream to send its set") { first.count == 1 }
        #expect(service.assignmentStreams.count == 1)
        do {
            try await service.assignments(request: request, response: RPCWriter(wrapping: Collected()), context: .testing)
            Issue.record("the second stream was served")
        } catch let error as RPCError {
            #expect(error.code == .resourceExhausted, "\(error)")
        }
        #expect(service.assignmentStreams.refused == 1)
        open.cancel()
        _ = await open.result
        #expect(service.assignmentStreams.count == 0)
        let again = Collected()
        let reopened = Task { try await service.assignments(request: request, response: RPCWriter(wrapping: again), context: .testing) }
        try await poll(timeout: .seconds(60), "a new stream to be served") { again.count == 1 }
        reopened.cancel()
        _ = await reopened.result
    }
}
