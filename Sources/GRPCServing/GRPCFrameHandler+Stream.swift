import GRPCCore
import NIOCore

// The per-stream state of `GRPCFrameHandler`, kept by the handler on its event loop.
extension GRPCFrameHandler {
    /// Where a stream's request messages go.
    enum Receiver {
        /// To the server's router and grpc-swift's executor, as an async sequence.
        case streaming(AsyncThrowingStream<RPCRequestPart<[UInt8]>, any Error>.Continuation)
        /// Collected here and handed to a `GRPCUnaryMethod` when the request ends.
        case unary(GRPCUnaryMethod, messages: [[UInt8]])
        /// Handed to a `GRPCSinkCall` on the event loop as each one completes.
        case sink(GRPCSinkCall)
    }

    /// What the handler knows of one open stream.
    struct Stream {
        var receiver: Receiver
        var cancellation: CancellationSlot
        var descriptor: MethodDescriptor
        var reader = GRPCMessageReader()
        /// Whether our response HEADERS went out (later metadata goes as trailers).
        var sentHeaders = false
        /// Whether we ended our side (trailers sent or refused): later writes are dropped.
        var closedLocally = false
        /// Whether the client ended its side.
        var closedRemotely = false
        /// Fast-path calls with a `grpc-timeout`: the timer that answers DEADLINE_EXCEEDED.
        var deadline: Scheduled<Void>?
        /// Sink calls: bytes received since the stream's window was last re-opened.
        var unacknowledged = 0
        /// Sink calls: whether `end` was called.
        var sinkEnded = false
        /// Streaming calls: what their writer has queued and the socket has not yet taken.
        var backpressure: WriteBackpressure?
        /// Bytes of the reader's partial message counted in the connection's `buffered`.
        var held = 0
        /// Bytes counted in the server's `TransportCounters.bufferedBytes` (only large messages).
        var charged = 0
        /// Sink calls: the method's `:path`, whose per-connection slot the call holds.
        var sinkPath: String?
    }
}
