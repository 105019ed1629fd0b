import GRPCCore
import NIOCore
import NIOHTTP2

// The connection's limits (what its streams may buffer, how many sink calls it may hold) and its
// identity. Everything here runs on the connection's event loop: the per-connection counts are
// plain integers; only large partial messages touch the server's shared atomic.
extension GRPCFrameHandler {
    /// A partial message larger than this counts against the server's `maxBufferedBytes`. Raft's
    /// appends (batches up to 1 MiB) and etcd requests stay under it, so their frames never touch
    /// the shared counter; snapshots and other large messages do, once per frame.
    static let largeMessageBytes = 1 << 20

    enum BufferVerdict {
        case within
        /// The server's budget for large partial messages would be passed (`total` bytes).
        case overServerBudget(total: Int)
        /// This connection holds more than `maxBufferedBytesPerConnection`.
        case overConnectionBudget
    }

    /// Counts what `stream`'s reader holds after a DATA frame; the caller acts on the verdict.
    func account(_ stream: inout Stream) -> BufferVerdict {
        let held = stream.reader.bufferedBytes
        buffered += held - stream.held
        stream.held = held
        let large = held > Self.largeMessageBytes ? held : 0
        if large != stream.charged {
            let total = counters.bufferedBytes.add(large - stream.charged, ordering: .relaxed).newValue
            let grew = large > stream.charged
            stream.charged = large
            if grew && total > configuration.maxBufferedBytes { return .overServerBudget(total: total) }
        }
        return buffered > configuration.maxBufferedBytesPerConnection ? .overConnectionBudget : .within
    }

    /// Forgets `stream`'s partial message, and its share of the counts.
    func dropBuffer(_ stream: inout Stream) {
        stream.reader = GRPCMessageReader()
        buffered -= stream.held
        stream.held = 0
        if stream.charged != 0 {
            counters.bufferedBytes.subtract(stream.charged, ordering: .relaxed)
            stream.charged = 0
        }
    }

    /// A stream leaves the table: its buffer and its sink slot are given back.
    func release(_ stream: inout Stream) {
        dropBuffer(&stream)
        if let path = stream.sinkPath {
            sinkCalls[path, default: 1] -= 1
            if sinkCalls[path] == 0 { sinkCalls[path] = nil }
            stream.sinkPath = nil
        }
    }

    /// Ends a call that hit a limit: RESOURCE_EXHAUSTED, then RST_STREAM (NO_ERROR, as RFC 9113
    /// §8.1 allows after a complete response) so the client stops sending what would be dropped.
    func refuse(_ id: HTTP2StreamID, with error: RPCError) {
        counters.refusedStreams.add(1, ordering: .relaxed)
        fail(id, with: error)
        write(HTTP2Frame(streamID: id, payload: .rstStream(.noError)))
        flush()
    }

    /// GOAWAY (ENHANCE_YOUR_CALM) and close: the client held more partial messages at once than a
    /// connection may. Its calls end as on any closed connection.
    func calm() {
        guard let context, !calmed else { return }
        calmed = true
        counters.calmedConnections.add(1, ordering: .relaxed)
        var why = context.channel.allocator.buffer(capacity: 64)
        why.writeString("more than \(configuration.maxBufferedBytesPerConnection) bytes of partial messages")
        write(HTTP2Frame(streamID: .rootStream,
                         payload: .goAway(lastStreamID: lastStreamID, errorCode: .enhanceYourCalm, opaqueData: why)))
        flush()
        context.close(promise: nil)
    }

    /// The identity hook answered: the frames that waited are read now, in order.
    func identityResolved(_ result: Result<(any ServerContext.TransportSpecific)?, any Error>) {
        guard let context, let frames = framesAwaitingIdentity else { return }
        switch result {
        case .success(let identity):
            self.identity = identity
            framesAwaitingIdentity = nil
            for frame in frames { read(frame, context: context) }
            if needsFlush { flush() }
        case .failure:
            framesAwaitingIdentity = nil
            context.close(promise: nil)
        }
    }
}
