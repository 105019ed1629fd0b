/// Outstanding ReadIndex requests of a leader (thesis §6.4), in arrival order.
///
/// Each request records the commit index when it arrived; it may be served once a quorum has
/// acknowledged a heartbeat sent after it, proving this server was still the leader then.
struct ReadOnlyQueue: Sendable {
    struct Request: Sendable {
        var index: UInt64
        var context: [UInt8]
        /// The follower that forwarded it, or the leader itself for local reads.
        var from: NodeID
        var acks: Set<NodeID>
    }

    private(set) var requests: [Request] = []

    var lastContext: [UInt8]? { requests.last?.context }

    mutating func add(index: UInt64, context: [UInt8], from: NodeID, leader: NodeID) {
        if requests.contains(where: { $0.context == context }) { return }
        requests.append(Request(index: index, context: context, from: from, acks: [leader]))
    }

    /// Records a heartbeat acknowledgement carrying `context`. When that request reaches a quorum,
    /// it and every request before it are released, in order: a later quorum proves earlier ones.
    mutating func acknowledge(context: [UInt8], from: NodeID, quorum: Int) -> [Request] {
        guard let pos = requests.firstIndex(where: { $0.context == context }) else { return [] }
        requests[pos].acks.insert(from)
        guard requests[pos].acks.count >= quorum else { return [] }
        let released = Array(requests[...pos])
        requests.removeFirst(pos + 1)
        return released
    }
}
