/// The leader's view of one follower's log (etcd's tracker.Progress).
///
/// - `probe`: the leader does not know where the follower's log matches; it sends one append at a
///   time and waits for the answer (backtracking).
/// - `replicate`: the logs match up to `match`; the leader streams appends optimistically, up to
///   `Inflights.capacity` unacknowledged messages (pipelining).
/// - `snapshot`: the follower needs a snapshot; nothing else is sent until it reports back.
struct Progress: Sendable {
    enum State: Sendable, Equatable { case probe, replicate, snapshot }

    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// Index of the snapshot in flight, in the `snapshot` state.
    var pendingSnapshot: UInt64 = 0
    /// Whether the follower was heard from since the last CheckQuorum round.
    var recentActive = false
    /// In the `probe` state: an append is outstanding, so wait (until a heartbeat response).
    var probeSent = false
    var inflights: Inflights
    var isLearner: Bool

    init(next: UInt64, maxInflight: Int, isLearner: Bool) {
        self.next = next
        self.inflights = Inflights(capacity: maxInflight)
        self.isLearner = isLearner
    }

    /// Whether the leader should hold back appends to this follower.
    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }

    private mutating func reset(_ newState: State) {
        probeSent = false
        pendingSnapshot = 0
        state = newState
        inflights.reset()
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            let pending = pendingSnapshot
            reset(.probe)
            next = max(match + 1, pending + 1)
        } else {
            reset(.probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(.replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        reset(.snapshot)
        pendingSnapshot = index
    }

    /// An acknowledgement up to `index`; returns whether it told us something new.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// A rejection of the append at `rejected`; `matchHint` is where the follower's log may match.
    /// Returns false when the rejection is stale (it answers an older message).
    mutating func maybeDecrTo(rejected: UInt64, matchHint: UInt64) -> Bool {
        if state == .replicate {
            // In pipelined mode a rejection at or below `match` answers an old message.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe mode only the answer to the last probe counts.
        if next - 1 != rejected { return false }
        next = max(min(rejected, matchHint + 1), 1)
        probeSent = false
        return true
    }
}

/// A bounded window of in-flight appends to one follower: the last index of each, in send order.
struct Inflights: Sendable {
    let capacity: Int
    private var buffer: [UInt64] = []
    private var start = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { buffer.count - start }
    var isFull: Bool { count >= capacity }

    mutating func add(_ lastIndex: UInt64) {
        buffer.append(lastIndex)
    }

    /// Frees every in-flight append whose last index is at most `index`.
    mutating func free(upTo index: UInt64) {
        while start < buffer.count, buffer[start] <= index { start += 1 }
        if start > 64 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
    }

    mutating func freeFirst() {
        if start < buffer.count { start += 1 }
    }

    mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        start = 0
    }
}
