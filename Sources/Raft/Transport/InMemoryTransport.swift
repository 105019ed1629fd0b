import Synchronization

/// A network of in-memory transports for tests: messages between registered nodes are delivered
/// through async streams, in order per pair, and links can be cut and healed.
public final class InMemoryNetwork: Sendable {
    private struct State {
        var inboxes: [NodeID: AsyncStream<[Message]>.Continuation] = [:]
        var cut: Set<[NodeID]> = []
        /// Messages of these kinds still to drop, each count decremented per message dropped.
        var drops: [MessageKind: Int] = [:]
        var unreachableHandlers: [NodeID: @Sendable (NodeID) -> Void] = [:]
        /// Messages handed to the network so far, by kind (dropped ones included).
        var sent: [MessageKind: Int] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// The transport of node `id` on this network.
    public func transport(for id: NodeID) -> InMemoryTransport {
        InMemoryTransport(id: id, network: self)
    }

    /// Drops every message between `a` and `b`, both ways, until `heal`.
    public func cut(_ a: NodeID, _ b: NodeID) {
        _ = state.withLock { $0.cut.insert([min(a, b), max(a, b)]) }
    }

    /// Cuts `node` off from every other node and tells its peers it is unreachable.
    public func isolate(_ node: NodeID) {
        let handlers = state.withLock { s -> [(NodeID, @Sendable (NodeID) -> Void)] in
            for other in s.inboxes.keys where other != node { s.cut.insert([min(node, other), max(node, other)]) }
            return s.unreachableHandlers.filter { $0.key != node }.map { ($0.key, $0.value) }
        }
        for (_, handler) in handlers { handler(node) }
    }

    /// Drops the next `count` messages of `kind`, wherever they go: one lost message, as a
    /// connection reset loses it.
    public func dropNext(_ kind: MessageKind, count: Int = 1) {
        state.withLock { $0.drops[kind, default: 0] += count }
    }

    /// How many messages of `kind` the nodes have sent so far.
    public func sentCount(_ kind: MessageKind) -> Int {
        state.withLock { $0.sent[kind, default: 0] }
    }

    /// Restores every link.
    public func healAll() {
        state.withLock { $0.cut.removeAll() }
    }

    func register(_ id: NodeID, _ continuation: AsyncStream<[Message]>.Continuation,
                  onUnreachable: @escaping @Sendable (NodeID) -> Void) {
        state.withLock {
            $0.inboxes[id] = continuation
            $0.unreachableHandlers[id] = onUnreachable
        }
    }

    func unregister(_ id: NodeID) {
        state.withLock {
            $0.inboxes[id] = nil
            $0.unreachableHandlers[id] = nil
        }
    }

    func deliver(from: NodeID, _ messages: [Message]) {
        state.withLock { s in
            var byTarget: [NodeID: [Message]] = [:]
            for m in messages {
                s.sent[m.kind, default: 0] += 1
                if let left = s.drops[m.kind], left > 0 {
                    s.drops[m.kind] = left - 1
                    continue
                }
                byTarget[m.to, default: []].append(m)
            }
            for (to, batch) in byTarget where !s.cut.contains([min(from, to), max(from, to)]) {
                s.inboxes[to]?.yield(batch)
            }
        }
    }
}

/// One node's endpoint on an `InMemoryNetwork`.
public struct InMemoryTransport: RaftTransport {
    public let id: NodeID
    let network: InMemoryNetwork

    public func send(_ messages: [Message]) {
        network.deliver(from: id, messages)
    }

    public func run(
        onReceive: @escaping @Sendable ([Message]) -> Void,
        onUnreachable: @escaping @Sendable (NodeID) -> Void
    ) async throws {
        let (stream, continuation) = AsyncStream<[Message]>.makeStream()
        network.register(id, continuation, onUnreachable: onUnreachable)
        defer { network.unregister(id) }
        for await batch in stream {
            onReceive(batch)
        }
    }
}
