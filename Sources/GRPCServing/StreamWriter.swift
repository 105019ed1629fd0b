import GRPCCore
import NIOHTTP2
import Synchronization

/// The outbound side of one call.
final class StreamWriter: ClosableRPCWriterProtocol, Sendable {
    typealias Element = RPCResponsePart<[UInt8]>

    private let streamID: HTTP2StreamID
    private let outbox: Outbox
    private let backpressure: WriteBackpressure
    private let ended = Mutex(false)

    init(streamID: HTTP2StreamID, outbox: Outbox, backpressure: WriteBackpressure) {
        self.streamID = streamID
        self.outbox = outbox
        self.backpressure = backpressure
    }

    func write(_ element: Element) async throws {
        switch element {
        case .status: ended.withLock { $0 = true }
        case .message(let message):
            // Counted before it is queued: the event loop may write it (and release it) at once.
            let queued = backpressure.queue(message.count)
            guard outbox.send(element, on: streamID) else {
                backpressure.written(message.count)
                throw RPCError(code: .unavailable, message: "the connection closed")
            }
            if queued > backpressure.limit { await backpressure.drained() }
            return
        case .metadata: break
        }
        guard outbox.send(element, on: streamID) else {
            throw RPCError(code: .unavailable, message: "the connection closed")
        }
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { try await write(element) }
    }

    /// grpc-swift writes a status before finishing; a writer finished without one still ends the
    /// stream, as a call that succeeded with no trailers.
    func finish() async {
        if !ended.withLock({ $0 }) { _ = try? await write(.status(Status(code: .ok, message: ""), [:])) }
    }

    func finish(throwing error: any Error) async {
        guard !ended.withLock({ $0 }) else { return }
        let rpcError = error as? RPCError ?? RPCError(code: .unknown, message: "\(error)")
        _ = try? await write(.status(Status(code: Status.Code(rpcError.code), message: rpcError.message), rpcError.metadata))
    }
}

/// Counts the message bytes a service has read from one stream and re-opens the stream's receive
/// window by them, in steps of half a window (so a unary call never sends a WINDOW_UPDATE).
final class ConsumptionCounter: Sendable {
    private let streamID: HTTP2StreamID
    private let outbox: Outbox
    private let threshold: Int
    private let pending = Mutex(0)

    init(streamID: HTTP2StreamID, outbox: Outbox, threshold: Int) {
        self.streamID = streamID
        self.outbox = outbox
        self.threshold = max(1, threshold)
    }

    func consumed(_ bytes: Int) {
        let due = pending.withLock { pending -> Int in
            pending += bytes
            guard pending >= threshold else { return 0 }
            defer { pending = 0 }
            return pending
        }
        if due > 0 { outbox.replenish(streamID, by: due) }
    }
}

/// The inbound parts of one call, reporting each message's bytes (with its 5-byte prefix) as read.
struct CountingParts: AsyncSequence, Sendable {
    typealias Element = RPCRequestPart<[UInt8]>
    typealias Failure = any Error

    let base: AsyncThrowingStream<Element, any Error>
    let counter: ConsumptionCounter

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Element, any Error>.AsyncIterator
        let counter: ConsumptionCounter

        mutating func next() async throws -> Element? {
            let part = try await base.next()
            if case .message(let bytes)? = part { counter.consumed(bytes.count + 5) }
            return part
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), counter: counter)
    }
}
