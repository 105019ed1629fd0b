import GRPCServing
import Raft
import Testing

@testable import RaftGRPC

@Suite("PeerLink, Backoff, Latch")
struct PeerLinkTests {
    static func link(capacity: Int = 4, batchMessages: Int = 100, batchBytes: Int = 1 << 20) -> PeerLink {
        PeerLink(
            peer: 2, address: PeerAddress(host: "127.0.0.1", port: 1),
            limits: .init(
                capacity: capacity, maxQueuedBytes: 1 << 30, maxBatchMessages: batchMessages,
                maxBatchBytes: batchBytes))
    }

    static func numbered(_ range: Range<Int>) -> [Message] {
        range.map { Message(kind: .heartbeat, from: 1, to: 2, commit: UInt64($0)) }
    }

    @Test("a full queue drops its oldest messages")
    func dropsOldest() async {
        let link = Self.link(capacity: 4)
        let first = link.enqueue(Self.numbered(0..<3))
        #expect(first.droppedOverflow == 0 && !first.startedOverflowing)
        let second = link.enqueue(Self.numbered(3..<6))
        #expect(second.droppedOverflow == 2)
        #expect(second.startedOverflowing)
        // Still overflowing: not reported again until the queue has drained.
        #expect(!link.enqueue(Self.numbered(6..<7)).startedOverflowing)
        let batch = await link.nextBatch()
        #expect(batch?.map(\.commit) == [3, 4, 5, 6])
    }

    @Test("batches respect the message and byte limits, in order")
    func batchLimits() async {
        let link = Self.link(capacity: 100, batchMessages: 3)
        _ = link.enqueue(Self.numbered(0..<7))
        #expect(await link.nextBatch()?.map(\.commit) == [0, 1, 2])
        #expect(await link.nextBatch()?.map(\.commit) == [3, 4, 5])
        #expect(await link.nextBatch()?.map(\.commit) == [6])

        // Sizes are estimates: 80 per message, 32 per entry, plus the payloads.
        let bytes = Self.link(capacity: 100, batchBytes: 1000)
        let half = Message(kind: .append, from: 1, to: 2, entries: [Entry(term: 1, index: 1, data: .init(repeating: 0, count: 400))])
        let huge = Message(kind: .append, from: 1, to: 2, entries: [Entry(term: 1, index: 1, data: .init(repeating: 0, count: 5000))])
        let small = Self.numbered(0..<1)[0]
        _ = bytes.enqueue([half, half, small, huge, small])
        #expect(await bytes.nextBatch() == [half])  // 512 + 512 would exceed 1000
        #expect(await bytes.nextBatch() == [half, small])
        #expect(await bytes.nextBatch() == [huge])  // over the limit alone: still sent, alone
        #expect(await bytes.nextBatch() == [small])
    }

    @Test("a down peer drops at once; up again queues")
    func downDrops() async {
        let link = Self.link()
        _ = link.enqueue(Self.numbered(0..<2))
        let (newOutage, dropped) = link.markDown()
        #expect(newOutage && dropped == 2)
        #expect(link.markDown().newOutage == false)  // reported once per outage
        #expect(link.enqueue(Self.numbered(2..<3)).droppedUnreachable == 1)
        link.markUp()
        #expect(link.enqueue(Self.numbered(3..<4)).queued == 1)
        #expect(await link.nextBatch()?.map(\.commit) == [3])
    }

    @Test("a waiting consumer wakes on enqueue, on close and on cancellation")
    func wakeUps() async {
        let link = Self.link()
        async let batch = link.nextBatch()
        _ = link.enqueue(Self.numbered(0..<1))
        #expect(await batch?.count == 1)

        let closing = Self.link()
        async let none = closing.nextBatch()
        #expect(closing.close().isEmpty)
        #expect(await none == nil)

        let idle = Self.link()
        let task = Task { await idle.nextBatch() }
        task.cancel()
        #expect(await task.value == nil)
    }

    @Test("close hands over what is still queued")
    func closeHandsOver() {
        let link = Self.link()
        _ = link.enqueue(Self.numbered(0..<3))
        #expect(link.close().map(\.commit) == [0, 1, 2])
        #expect(link.closedLatch.isFired)
        #expect(link.enqueue(Self.numbered(3..<4)).droppedUnreachable == 1)
    }

    @Test("backoff doubles to the maximum with bounded jitter, and is reproducible")
    func backoff() {
        let policy = BackoffPolicy.raftDefault
        var a = Backoff(policy: policy, seed: 1)
        var b = Backoff(policy: policy, seed: 1)
        let expected: [Double] = [0.05, 0.1, 0.2, 0.4, 0.8, 1, 1, 1]
        for base in expected {
            let delay = a.next()
            #expect(delay == b.next())
            #expect(delay.seconds >= base * 0.8 - 1e-9 && delay.seconds <= base * 1.2 + 1e-9)
        }
        a.reset()
        #expect(a.next().seconds <= 0.06)
        var c = Backoff(policy: policy, seed: 2)
        var d = Backoff(policy: policy, seed: 3)
        #expect((0..<5).map { _ in c.next() } != (0..<5).map { _ in d.next() })
    }

    @Test("a latch releases every waiter, and cancelled waiters")
    func latch() async {
        let latch = Latch()
        async let one: Void = latch.wait()
        async let two: Void = latch.wait()
        latch.fire()
        _ = await (one, two)
        await latch.wait()  // already fired: returns at once

        let never = Latch()
        let task = Task { await never.wait() }
        task.cancel()
        await task.value
        #expect(!never.isFired)
        #expect(await never.wait(atMost: .milliseconds(20)) == false)
        #expect(await latch.wait(atMost: .seconds(5)) == true)
    }
}

extension PeerLink {
    /// The next write as a batch (these tests queue no snapshot, so every write is one).
    func nextBatch() async -> [Message]? {
        switch await nextWrite() {
        case .batch(let batch)?: batch
        case .chunk?, nil: nil
        }
    }
}
