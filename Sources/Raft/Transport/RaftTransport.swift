/// Carries Raft messages between servers.
///
/// Delivery is best effort: Raft tolerates loss, duplication and reordering, but a transport should
/// keep the order of messages to one peer, because pipelined replication relies on it for speed.
public protocol RaftTransport: Sendable {
    /// Queues `messages` for their recipients (`Message.to`) and returns at once; never waits on the
    /// network. Messages to a peer that cannot be reached are dropped.
    func send(_ messages: [Message])

    /// Receives from peers until the calling task is cancelled: every batch that arrives goes to
    /// `onReceive`; `onUnreachable` is told when the connection to a peer breaks, so that a follower
    /// that loses its leader can start a pre-vote at once instead of waiting out its timeout.
    ///
    /// Both are called on the transport's own threads (a network event loop, say) and must hand
    /// over and return without blocking: not being `async` spares a task hop per batch.
    func run(
        onReceive: @escaping @Sendable ([Message]) -> Void,
        onUnreachable: @escaping @Sendable (NodeID) -> Void
    ) async throws
}
