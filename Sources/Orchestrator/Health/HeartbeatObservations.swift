/// What the leader has seen of each node's heartbeats, timed on the leader's own monotonic clock.
///
/// A heartbeat's stored value is the wall clock of whichever master received it. Judging silence
/// by subtracting that value from the leader's wall clock would make node health depend on every
/// master's clock: one stepped forward by an hour (NTP, an operator, a VM resumed) would declare
/// every node down at once and reschedule the whole cluster. Instead the leader only asks *whether
/// a node's heartbeat changed* since its previous pass, and stamps the change with its own
/// monotonic time, which no clock step moves. A node's silence is then the monotonic time since
/// its heartbeat last changed, as this leader saw it.
///
/// The leader samples once per reconcile pass, so it sees a change up to a pass period after the
/// heartbeat arrived: silence is under-counted by at most that much, which only ever declares a
/// node down later, never earlier (the worker's lease, shorter than `downAfter`, still expires
/// first). A node first seen by this leader (after an election, or a join) counts as heard from
/// at that moment: a new leader never saw the heartbeats that went to its predecessor, so every
/// node gets a full `downAfter` before it can be declared down (the grace a leader change needs).
///
/// Pure: the caller passes the monotonic time in, so the rules replay in tests.
public struct HeartbeatObservations: Sendable {
    /// What identifies one heartbeat of a node: the value its heartbeat key held, and the time the
    /// node record carries (set when it joins). Any change of either is a sign of life; equality
    /// rather than "later than" is what makes a backwards clock step harmless too.
    struct Token: Sendable, Hashable {
        var heartbeat: Int64?
        var joined: Int64
    }

    private var lastToken: [String: Token] = [:]
    private var lastChange: [String: Int64] = [:]

    public init() {}

    /// Records what the leader read at monotonic time `now` (milliseconds) and returns each
    /// node's silence in milliseconds. Nodes no longer listed are forgotten.
    public mutating func observe(nodes: [NodeRecord], heartbeats: [String: Int64], at now: Int64) -> [String: Int64] {
        var silence: [String: Int64] = [:]
        var seen: Set<String> = []
        for node in nodes {
            let id = node.info.id
            seen.insert(id)
            let token = Token(heartbeat: heartbeats[id], joined: node.lastHeartbeat)
            if lastToken[id] != token || lastChange[id] == nil {
                lastToken[id] = token
                lastChange[id] = now
            }
            silence[id] = max(0, now - (lastChange[id] ?? now))
        }
        for id in lastToken.keys where !seen.contains(id) {
            lastToken[id] = nil
            lastChange[id] = nil
        }
        return silence
    }
}
