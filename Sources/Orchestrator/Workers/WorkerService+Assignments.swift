import ClusterModel
import ClusterProto
import Foundation
import GRPCCore
import Store

/// The assignment stream: one worker's assigned and running tasks, as a whole set at some store
/// revision, then again whenever what the worker acts on (an epoch, a stop request, a task added
/// or gone) changes after it. A worker never misses an assignment and never sees sets out of order.
extension WorkerService {
    public func assignments(request: Orchestrator_V1_AssignmentsRequest, response: RPCWriter<Orchestrator_V1_AssignmentSet>, context: ServerContext) async throws {
        try authorization.caller(context, mustBe: [.worker])
        let nodeID = request.nodeID
        // The slot is taken before the store is read: streams that fail authorization still
        // cost a read each, and only `limit` of them can be under way at once.
        guard assignmentStreams.take() else {
            throw RPCError(code: .resourceExhausted,
                           message: "this master serves \(assignmentStreams.limit) assignment streams, the most it may; retry on another master")
        }
        defer { assignmentStreams.give() }
        let node = try await mapStoreErrors { try await repository.node(nodeID, consistency: .linearizable) }
        try authorize(node: node, credential: request.nodeCredential)
        // Every assignment to this node (a new epoch) was written together with the node's record
        // (`ClusterRepository.assign`), so a cache at the record's revision, read linearizably
        // just now, holds every assignment the worker may already have seen from another master:
        // its first set cannot lack one (which the worker would take for "stop it").
        if let cache, let updates = await cache.assignmentUpdates(of: nodeID, atLeast: node.revision) {
            try await followCache(updates, response: response)
            return
        }
        try await followStore(nodeID: nodeID, response: response)
    }

    /// Sends the cache's sets for one node, each only when it differs in what the worker acts on
    /// from the last one sent (the first always). Ends when the cache stops following the store.
    func followCache(_ updates: AsyncStream<NodeAssignments>, response: RPCWriter<Orchestrator_V1_AssignmentSet>) async throws {
        var sent: [String: AssignmentSignature]?
        var specs = EncodedSpecs()
        for await set in updates {
            var current: [String: TaskRecord] = [:]
            for t in set.tasks { current[t.id] = t }
            let signature = Self.signature(current)
            guard signature != sent else { continue }
            sent = signature
            try await response.write(specs.message(current, revision: set.revision))
        }
    }

    /// Without a cache: a fresh read of every task, then a watch of every task change after it; a
    /// compacted watch (we fell too far behind) starts over from a fresh read rather than missing
    /// anything.
    func followStore(nodeID: String, response: RPCWriter<Orchestrator_V1_AssignmentSet>) async throws {
        var specs = EncodedSpecs()
        while !Task.isCancelled {
            let (tasks, revision) = try await mapStoreErrors { try await repository.assignments(of: nodeID, consistency: .linearizable) }
            var current: [String: TaskRecord] = [:]
            for t in tasks { current[t.id] = t }
            var sent = Self.signature(current)
            try await response.write(specs.message(current, revision: revision))
            do {
                for try await change in repository.store.watch(key: ClusterRepository.taskPrefix, rangeEnd: KeyRange.prefixEnd(ClusterRepository.taskPrefix),
                                                              fromRevision: revision + 1, prevKV: false) {
                    for event in change.events {
                        let id = String(decoding: event.kv.key.dropFirst(ClusterRepository.taskPrefix.count), as: UTF8.self)
                        if event.kind == .put, let t = try? ClusterRepository.decode(TaskRecord.self, event.kv),
                           t.node == nodeID, t.state == .assigned || t.state == .running {
                            current[id] = t
                        } else {
                            current[id] = nil
                        }
                    }
                    let signature = Self.signature(current)
                    if signature != sent, !change.events.isEmpty {
                        sent = signature
                        try await response.write(specs.message(current, revision: change.revision))
                    }
                }
                return
            } catch StoreError.compacted {
                continue
            }
        }
    }

    /// What the worker acts on: a new set is sent only when an epoch or a stop request changed.
    static func signature(_ tasks: [String: TaskRecord]) -> [String: AssignmentSignature] {
        tasks.mapValues { AssignmentSignature(epoch: $0.epoch, stop: $0.moving != nil) }
    }

    struct AssignmentSignature: Hashable {
        var epoch: UInt64
        var stop: Bool
    }

    /// The encoded specs of the tasks one stream last sent. A set is resent whole on every change
    /// and a task's spec never changes once stored, so each spec is encoded once per stream, not
    /// once per set: with 40 tasks a node, encoding every spec of every set was 5% of the masters'
    /// CPU in `bench churn` (perf, BENCHMARKS.md).
    struct EncodedSpecs {
        private var bytes: [String: Data] = [:]

        /// The message for `tasks` at `revision`; remembers the specs of exactly these tasks.
        mutating func message(_ tasks: [String: TaskRecord], revision: Int64) -> Orchestrator_V1_AssignmentSet {
            var kept: [String: Data] = [:]
            kept.reserveCapacity(tasks.count)
            let message = Orchestrator_V1_AssignmentSet.with { set in
                set.revision = revision
                set.assignments = tasks.values.sorted { $0.id < $1.id }.map { t in
                    let spec = bytes[t.id] ?? Data(ClusterRepository.encode(t.spec))
                    kept[t.id] = spec
                    return .with {
                        $0.taskID = t.id
                        $0.epoch = t.epoch
                        $0.spec = spec
                        $0.stop = t.moving != nil
                    }
                }
            }
            bytes = kept
            return message
        }
    }
}
