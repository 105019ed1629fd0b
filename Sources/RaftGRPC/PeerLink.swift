import GRPCServing
import Raft
import Synchronization

/// A first-in first-out buffer with O(1) amortised push and pop (an array and a moving head),
/// so that neither draining nor dropping the oldest element shifts the whole queue.
struct FIFO<Element> {
    private var storage: [Element?] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ element: Element) { storage.append(element) }

    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        storage[head] = nil
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    var first: Element? { head < storage.count ? storage[head] : nil }

    mutating func removeAll() -> [Element] {
        defer {
            storage.removeAll()
            head = 0
        }
        return storage[head...].compactMap { $0 }
    }
}

/// Where a peer listens.
struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What the sender knows about its peer.
enum Connectivity: Sendable, Equatable {
    /// No attempt has finished yet: queue messages, the first connection will likely succeed.
    case unknown
    /// A stream is established and the peer said hello.
    case up
    /// The last attempt failed or the stream broke: drop messages until a stream is up again.
    case down
}

/// The outbound side of the connection to one peer: a bounded queue that `send` fills without
/// ever waiting, and that one sender task drains onto the peer's stream.
///
/// When the queue is full the **oldest** message is dropped. Raft messages only grow staler while
/// they wait: a queued heartbeat carries an old commit index, a queued vote or append an old term,
/// and the leader re-sends whatever the follower misses (a gap makes the follower reject the next
/// append and the leader probes back). Dropping the newest instead would deliver the stale burst
/// and lose the one message that reflects the leader's current state.
///
/// While the peer is known to be down, messages are dropped at once rather than queued, as
/// `RaftTransport` specifies: after a long outage the peer would otherwise receive a backlog that
/// is useless to it (etcd's rafthttp behaves the same way).
///
/// A snapshot message does not enter the queue: it waits in a slot of its own (one per peer, the
/// newest snapshot replacing an older one) and goes out in chunks of `snapshotChunkBytes`, one
/// chunk between two batches of the queue, so that heartbeats and votes never wait behind a
/// whole snapshot and a large one is neither counted against the queue's limits nor dropped by them.
final class PeerLink: Sendable {
    struct Limits: Sendable {
        var capacity: Int
        var maxQueuedBytes: Int
        var maxBatchMessages: Int
        var maxBatchBytes: Int
        var snapshotChunkBytes: Int = 1 << 20
    }

    /// What the sender writes next on the stream.
    enum Write: Sendable {
        /// Ordinary messages, oldest first.
        case batch([Message])
        /// The next piece of the snapshot in the slot.
        case chunk(OutboundSnapshot.ChunkRange)
    }

    /// What `enqueue` did, for the caller to count and log outside the lock.
    struct EnqueueResult {
        var queued = 0
        var droppedOverflow = 0
        var droppedUnreachable = 0
        /// True when this call started an overflow episode (to log it once, not per message).
        var startedOverflowing = false
        /// Snapshot messages dropped because the same snapshot is being sent already.
        var duplicateSnapshots = 0
        /// True when a snapshot replaced one whose transfer had begun (the peer abandons that one).
        var supersededSnapshot = false
    }

    private struct State {
        var queue = FIFO<(message: Message, size: Int)>()
        var queuedBytes = 0
        var connectivity = Connectivity.unknown
        var closed = false
        var overflowing = false
        var waiter: CheckedContinuation<Void, Never>?
        /// The snapshot being sent, or waiting to be.
        var snapshot: OutboundSnapshot?
        /// Whose turn it is when both a batch and a chunk could go: they alternate.
        var chunkNext = false
    }

    let peer: NodeID
    let address: PeerAddress
    let limits: Limits
    /// Fires when the link is closed (peer removed or re-addressed) so its sender stops at once.
    let closedLatch = Latch()
    private let state: Mutex<State>

    init(peer: NodeID, address: PeerAddress, limits: Limits, pending: [Message] = []) {
        self.peer = peer
        self.address = address
        self.limits = limits
        var initial = State()
        for message in pending {
            if message.kind == .snapshot, message.snapshot != nil {
                initial.snapshot = OutboundSnapshot(message)
                continue
            }
            let size = message.estimatedWireSize
            initial.queue.append((message, size))
            initial.queuedBytes += size
        }
        self.state = Mutex(initial)
    }

    var connectivity: Connectivity { state.withLock { $0.connectivity } }
    var isClosed: Bool { state.withLock { $0.closed } }
    var queuedCount: Int { state.withLock { $0.queue.count } }
    /// Whether a snapshot waits or is being sent.
    var hasSnapshot: Bool { state.withLock { $0.snapshot != nil } }

    /// Appends `messages` in order, dropping the oldest queued messages beyond the limits; a
    /// snapshot message goes to the snapshot slot instead (see the type's documentation).
    func enqueue(_ messages: some Collection<Message>) -> EnqueueResult {
        var result = EnqueueResult()
        // Headers are encoded before taking the lock (cheap, but not free).
        let snapshots = messages.filter { $0.kind == .snapshot && $0.snapshot != nil }.map(OutboundSnapshot.init)
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.closed, state.connectivity != .down else {
                result.droppedUnreachable = messages.count
                return nil
            }
            for snapshot in snapshots {
                if let current = state.snapshot, current.isSameTransfer(as: snapshot) {
                    result.duplicateSnapshots += 1
                    continue
                }
                if let current = state.snapshot, current.chunksTaken > 0 { result.supersededSnapshot = true }
                state.snapshot = snapshot
                result.queued += 1
            }
            for message in messages where !(message.kind == .snapshot && message.snapshot != nil) {
                let size = message.estimatedWireSize
                state.queue.append((message, size))
                state.queuedBytes += size
                result.queued += 1
            }
            // Keep at least the newest message even if it alone exceeds the byte limit: the
            // caller already refused messages too large to send at all.
            while state.queue.count > 1,
                state.queue.count > limits.capacity || state.queuedBytes > limits.maxQueuedBytes
            {
                let dropped = state.queue.popFirst()!
                state.queuedBytes -= dropped.size
                result.droppedOverflow += 1
            }
            if result.droppedOverflow > 0, !state.overflowing {
                state.overflowing = true
                result.startedOverflowing = true
            }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
        return result
    }

    /// Waits for something to send and takes it: a batch of queued messages, oldest first, within
    /// the batch limits (always at least one message), or the snapshot's next chunk; the two take
    /// turns while both wait. Returns nil once the link is closed or the task cancelled.
    func nextWrite() async -> Write? {
        while true {
            if Task.isCancelled { return nil }
            enum Step {
                case write(Write)
                case closed
                case wait
            }
            let step = state.withLock { state -> Step in
                if state.closed { return .closed }
                if var snapshot = state.snapshot, state.chunkNext || state.queue.isEmpty {
                    state.snapshot = nil  // uniquely referenced while it advances
                    let chunk = snapshot.takeChunk(chunkBytes: limits.snapshotChunkBytes)
                    state.snapshot = chunk.isLast ? nil : snapshot
                    state.chunkNext = false
                    return .write(.chunk(chunk))
                }
                guard !state.queue.isEmpty else { return .wait }
                state.chunkNext = true
                var batch: [Message] = []
                var bytes = 0
                while let next = state.queue.first, batch.count < limits.maxBatchMessages,
                    batch.isEmpty || bytes + next.size <= limits.maxBatchBytes
                {
                    _ = state.queue.popFirst()
                    state.queuedBytes -= next.size
                    bytes += next.size
                    batch.append(next.message)
                }
                if state.queue.isEmpty { state.overflowing = false }
                return .write(.batch(batch))
            }
            switch step {
            case .write(let write): return write
            case .closed: return nil
            case .wait: await waitForWork()
            }
        }
    }

    private func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.closed || !state.queue.isEmpty || state.snapshot != nil || Task.isCancelled { return true }
                    // One consumer per link: a previous waiter cannot exist.
                    precondition(state.waiter == nil, "PeerLink has a single consumer")
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }?.resume()
        }
    }

    /// The peer answered on a new stream: queue messages again.
    func markUp() {
        state.withLock { $0.connectivity = .up }
    }

    /// The stream broke or could not be opened: drop what is queued and what comes until the next
    /// stream is up. Returns true when the peer was not already known to be down, i.e. when the
    /// outage is new and must be reported (once per outage, not once per retry).
    func markDown() -> (newOutage: Bool, dropped: Int) {
        state.withLock { state in
            let newOutage = state.connectivity != .down
            state.connectivity = .down
            // A snapshot transfer cut short starts over on the next stream, if Raft sends it again:
            // the peer discards the partial one when the stream breaks.
            let dropped = state.queue.removeAll().count + (state.snapshot == nil ? 0 : 1)
            state.snapshot = nil
            state.queuedBytes = 0
            state.overflowing = false
            return (newOutage, dropped)
        }
    }

    /// Closes the link and returns the messages still queued, oldest first (handed to the link
    /// that replaces this one when only the peer's address changed).
    func close() -> [Message] {
        let (pending, waiter) = state.withLock { state -> ([Message], CheckedContinuation<Void, Never>?) in
            guard !state.closed else { return ([], nil) }
            state.closed = true
            // The snapshot is handed over whole: the new link's stream starts it from the beginning.
            let pending = state.queue.removeAll().map(\.message) + (state.snapshot.map { [$0.message] } ?? [])
            state.snapshot = nil
            state.queuedBytes = 0
            defer { state.waiter = nil }
            return (pending, state.waiter)
        }
        waiter?.resume()
        closedLatch.fire()
        return pending
    }
}

extension Message {
    /// An upper-bound estimate of the encoded size, for batching and queue limits without encoding
    /// twice (protobuf varints make the exact size depend on the values).
    var estimatedWireSize: Int {
        var size = 80 + context.count
        for entry in entries { size += 32 + entry.data.count }
        if let snapshot {
            size += 32 + snapshot.data.count
                + 10 * (snapshot.metadata.confState.voters.count + snapshot.metadata.confState.learners.count)
        }
        return size
    }
}
