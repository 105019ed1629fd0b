import GRPCCore
import NIOCore
import NIOHTTP2

// Writing responses: parts of a call, window updates, and the one flush per read burst.
extension GRPCFrameHandler {
    /// Writes one response part of stream `id` (on the event loop; the caller flushes).
    /// `counted`: a message its stream's `WriteBackpressure` counts, released once the socket has
    /// taken it (or the write failed), or now if it is dropped.
    func respond(_ id: HTTP2StreamID, with part: RPCResponsePart<[UInt8]>, counted: Bool = false) {
        guard var stream = streams[id], !stream.closedLocally, let context else {
            // Dropped: a stream that is gone had its backpressure closed; an ended one releases.
            if counted, case .message(let message) = part { streams[id]?.backpressure?.written(message.count) }
            return
        }
        // The table is brought up to date before anything is written: a write can close the
        // stream and swift-nio-http2 then reports the close (which removes the entry) inside
        // `write`. Storing the entry after the write put back a closed stream, kept for the
        // connection's life with the receive buffer its request was sliced from (a trailers-only
        // answer, an error, goes out at once; 775 of 800 error calls left one).
        let openHead = !stream.sentHeaders
        switch part {
        case .metadata, .message:
            stream.sentHeaders = true
            streams[id] = stream
        case .status:
            stream.closedLocally = true
            stream.deadline?.cancel()
            stream.deadline = nil
            streams[id] = stream
        }
        switch part {
        case .metadata(let metadata):
            write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: GRPCResponseHeaders.head(metadata)))))
        case .message(let message):
            if openHead {
                write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: GRPCResponseHeaders.head([:])))))
            }
            var buffer = context.channel.allocator.buffer(capacity: message.count + 5)
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(message.count))
            buffer.writeBytes(message)
            let frame = HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(buffer))))
            if counted, let backpressure = stream.backpressure {
                // The promise completes when swift-nio-http2 has passed the frame to the socket,
                // which it holds back while the client's window is closed.
                let promise = context.eventLoop.makePromise(of: Void.self)
                let bytes = message.count
                promise.futureResult.whenComplete { _ in backpressure.written(bytes) }
                context.write(wrapOutboundOut(frame), promise: promise)
                needsFlush = true
            } else {
                write(frame)
            }
        case .status(let status, let metadata):
            let headers = GRPCResponseHeaders.trailers(status, metadata, trailersOnly: openHead)
            write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: true))))
        }
    }

    /// Re-opens `id`'s receive window by what its service has read.
    func replenish(_ id: HTTP2StreamID, by bytes: Int) {
        guard let stream = streams[id], !stream.closedRemotely else { return }
        write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes)))
    }

    func flush() {
        needsFlush = false
        context?.flush()
        countStreams()
    }

    func write(_ frame: HTTP2Frame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        needsFlush = true
    }

    static func describe(_ address: SocketAddress?) -> String {
        switch address {
        case .v4(let a)?: "ipv4:\(a.host):\(address?.port ?? 0)"
        case .v6(let a)?: "ipv6:[\(a.host)]:\(address?.port ?? 0)"
        case .unixDomainSocket?: "unix:\(address?.pathname ?? "")"
        case nil: "unknown"
        }
    }
}
