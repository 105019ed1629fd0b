import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One connection of `DirectHTTP2ServerTransport`: sits behind `NIOHTTP2Handler` (no stream
/// multiplexer), so it sees every stream's frames and answers on the same connection.
///
/// Event-loop bound: every method runs on the connection's event loop. Writers on other threads
/// reach it through the `Outbox`.
final class GRPCFrameHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    typealias StreamHandler = @Sendable (
        RPCStream<DirectHTTP2ServerTransport.Inbound, DirectHTTP2ServerTransport.Outbound>, ServerContext
    ) async -> Void

    // Members without `private` are internal only because the GRPCFrameHandler+*.swift
    // extensions use them; nothing else should.
    let configuration: DirectHTTP2ServerTransport.Configuration
    let counters: TransportCounters
    let streamHandler: StreamHandler
    var streams: [HTTP2StreamID: Stream] = [:]
    var context: ChannelHandlerContext?
    var outbox: Outbox?
    var peers = (remote: "unknown", local: "unknown")
    var lastStreamID = HTTP2StreamID.rootStream
    var draining = false
    var needsFlush = false
    /// What the client may still send on the connection, by our own count (HTTP/2 starts at 65,535).
    /// Counted here rather than taken from swift-nio-http2's window events: a WINDOW_UPDATE we
    /// write while the socket is not writable waits in its buffer and is not yet in its count, so
    /// every DATA frame meanwhile asked for another update, and enough of them overflowed the
    /// client's window (a FLOW_CONTROL_ERROR that closed the connection, seen once in CI).
    var connectionWindow = 65_535
    /// The connection's identity from `Configuration.peerIdentity`, once resolved.
    var identity: (any ServerContext.TransportSpecific)?
    /// Frames that arrived while the identity was being resolved (nil once it is, or without a
    /// hook). Bounded without a limit of its own: the connection window (65,535 bytes until our
    /// first WINDOW_UPDATE, which only processing a DATA frame sends) and the streams allowed.
    var framesAwaitingIdentity: [HTTP2Frame]?
    /// Bytes of partial messages held by this connection's streams (`Stream.held` summed).
    var buffered = 0
    /// Open calls of each sink method, by `:path` (see `GRPCSinkMethod.maxCallsPerConnection`).
    var sinkCalls: [String: Int] = [:]
    /// Whether the connection was told to calm down and is closing.
    var calmed = false
    /// `streams.count` as last added to `TransportCounters.openStreams` (see `countStreams`).
    var countedStreams = 0

    init(configuration: DirectHTTP2ServerTransport.Configuration, counters: TransportCounters,
         streamHandler: @escaping StreamHandler) {
        self.configuration = configuration
        self.counters = counters
        self.streamHandler = streamHandler
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        outbox = Outbox(handler: NIOLoopBound(self, eventLoop: context.eventLoop), eventLoop: context.eventLoop)
        peers = (Self.describe(context.channel.remoteAddress), Self.describe(context.channel.localAddress))
        if let resolve = configuration.peerIdentity {
            framesAwaitingIdentity = []
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            resolve(context.channel).hop(to: context.eventLoop).whenComplete { result in
                handler.value.identityResolved(result)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll(reason: "the connection closed")
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll(reason: "the connection closed")
        context.fireChannelInactive()
    }

    func closeAll(reason: String) {
        outbox?.close()
        outbox = nil
        let open = streams
        streams = [:]
        countStreams()
        for var stream in open.values {
            release(&stream)
            stream.deadline?.cancel()
            stream.cancellation.cancel()
            stream.backpressure?.close()
            switch stream.receiver {
            case .streaming(let inbound): inbound.finish(throwing: RPCError(code: .unavailable, message: reason))
            case .sink(let call) where !stream.sinkEnded: call.end(RPCError(code: .unavailable, message: reason))
            case .sink, .unary: break
            }
        }
    }

    /// Sends GOAWAY and closes once the last open stream ends.
    func drain() {
        guard let context, !draining else { return }
        draining = true
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(
            streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))),
            promise: nil)
        if streams.isEmpty { context.close(promise: nil) }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if framesAwaitingIdentity != nil {
            framesAwaitingIdentity!.append(frame)
            return
        }
        read(frame, context: context)
    }

    func read(_ frame: HTTP2Frame, context: ChannelHandlerContext) {
        switch frame.payload {
        case .headers(let headers):
            if streams[frame.streamID] == nil {
                open(frame.streamID, headers: headers.headers, endStream: headers.endStream, context: context)
            } else if headers.endStream {
                // Trailers from the client end its side; gRPC clients send none, so they carry nothing we use.
                endInbound(frame.streamID)
            }
        case .data(let payload):
            // What flow control counts: the data and any padding.
            let flowControlled = payload.data.readableBytes + (payload.paddingBytes.map { $0 + 1 } ?? 0)
            connectionWindow -= flowControlled
            if connectionWindow <= configuration.connectionWindowBytes / 2 {
                // Topped up as data arrives; the stream windows bound what is buffered unread.
                write(HTTP2Frame(streamID: .rootStream,
                                 payload: .windowUpdate(windowSizeIncrement: configuration.connectionWindowBytes - connectionWindow)))
                connectionWindow = configuration.connectionWindowBytes
            }
            guard case .byteBuffer(let bytes) = payload.data else { return }
            received(bytes, on: frame.streamID, endStream: payload.endStream, flowControlled: flowControlled)
        case .rstStream:
            reset(frame.streamID, message: "the client cancelled the call")
        default:
            break  // SETTINGS, PING, WINDOW_UPDATE, GOAWAY: NIOHTTP2Handler has acted on them.
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        countStreams()
        context.fireChannelReadComplete()
    }

    /// Brings `TransportCounters.openStreams` up to date with the table, at the end of each read
    /// burst, flush and close: counted from the table itself, so an entry left behind shows.
    func countStreams() {
        let count = streams.count
        if count != countedStreams {
            counters.openStreams.add(count - countedStreams, ordering: .relaxed)
            countedStreams = count
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            if var stream = streams.removeValue(forKey: closed.streamID) {
                release(&stream)
                stream.deadline?.cancel()
                stream.backpressure?.close()
                if case .sink(let call) = stream.receiver, !stream.sinkEnded {
                    call.end(RPCError(code: .cancelled, message: "the stream was reset"))
                }
                if closed.reason != nil || !stream.closedLocally {
                    stream.cancellation.cancel()
                    if case .streaming(let inbound) = stream.receiver {
                        inbound.finish(throwing: RPCError(code: .cancelled, message: "the stream was reset"))
                    }
                } else if !stream.closedRemotely, case .streaming(let inbound) = stream.receiver {
                    inbound.finish()
                }
            }
            if draining && streams.isEmpty { context.close(promise: nil) }
            countStreams()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            reset(streamError.streamID, message: "HTTP/2 stream error: \(streamError.baseError)")
        } else {
            context.close(promise: nil)
        }
    }

    func received(_ bytes: ByteBuffer, on id: HTTP2StreamID, endStream: Bool, flowControlled: Int) {
        // Taken out of the table while it grows, so its buffer is not shared and appends in place
        // (a copy left in the table made every DATA frame of a large message copy all before it).
        guard var stream = streams.removeValue(forKey: id) else { return }
        if stream.closedRemotely {
            streams[id] = stream
            return
        }
        stream.reader.append(bytes)
        // Written once the stream is back in the table: any write may deliver a pending close of
        // this very stream, which must find its entry (see `respond`).
        var windowUpdate = 0
        if case .sink = stream.receiver {
            // A sink takes each message as soon as it is whole, so what is buffered here is at
            // most one partial message (bounded by the message limit): the window re-opens as
            // bytes arrive, in steps of half of it. Waiting for whole messages instead would stall
            // a message larger than the window (a Raft snapshot) forever.
            stream.unacknowledged += flowControlled
            if stream.unacknowledged >= configuration.streamWindowBytes / 2 {
                windowUpdate = stream.unacknowledged
                stream.unacknowledged = 0
            }
        }
        do {
            while let message = try stream.reader.next(limit: configuration.maxRequestMessageBytes) {
                switch stream.receiver {
                case .streaming(let inbound): inbound.yield(.message(message))
                case .unary(let method, var messages):
                    messages.append(message)
                    stream.receiver = .unary(method, messages: messages)
                case .sink(let call):
                    call.receive(message)
                }
            }
            switch account(&stream) {
            case .within:
                break
            case .overServerBudget(let total):
                streams[id] = stream
                refuse(id, with: RPCError(code: .resourceExhausted, message:
                    "the server holds \(total) bytes of large partial messages, over its limit of \(configuration.maxBufferedBytes)"))
                return
            case .overConnectionBudget:
                streams[id] = stream
                calm()
                return
            }
            if endStream && stream.reader.hasPartialMessage {
                throw RPCError(code: .internalError, message: "the request ended inside a message")
            }
            streams[id] = stream
            if windowUpdate > 0 { write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: windowUpdate))) }
            if endStream { endOfRequest(id) }
        } catch {
            streams[id] = stream
            let rpcError = error as? RPCError ?? RPCError(code: .internalError, message: "\(error)")
            fail(id, with: rpcError)
        }
    }

    func endInbound(_ id: HTTP2StreamID) {
        guard let stream = streams[id], !stream.closedRemotely else { return }
        endOfRequest(id)
    }

    func reset(_ id: HTTP2StreamID, message: String) {
        guard var stream = streams[id] else { return }
        stream.closedLocally = true
        stream.closedRemotely = true
        stream.deadline?.cancel()
        stream.deadline = nil
        streams[id] = stream
        stream.cancellation.cancel()
        stream.backpressure?.close()
        if case .streaming(let inbound) = stream.receiver {
            inbound.finish(throwing: RPCError(code: .cancelled, message: message))
        }
        endSink(id, RPCError(code: .cancelled, message: message))
    }

    /// Ends a call the transport itself refuses (bad framing, oversized message): the status goes
    /// out now, the service's task sees its inbound fail, and its later writes are dropped.
    func fail(_ id: HTTP2StreamID, with error: RPCError) {
        // The call is ended before the status is written: writing it may close the stream, whose
        // entry then leaves the table inside `respond`.
        if var stream = streams[id] {
            stream.closedRemotely = true  // nothing more is read from it
            dropBuffer(&stream)
            streams[id] = stream
            stream.cancellation.cancel()
            stream.backpressure?.close()
            if case .streaming(let inbound) = stream.receiver { inbound.finish(throwing: error) }
            endSink(id, error)
        }
        respond(id, with: .status(Status(code: Status.Code(error.code), message: error.message), [:]))
    }

    /// A fast-path call outlived its `grpc-timeout`: DEADLINE_EXCEEDED goes out now, the call's
    /// task is cancelled, and its answer, if it still comes, is dropped.
    func deadlinePassed(_ id: HTTP2StreamID) {
        guard let stream = streams[id], !stream.closedLocally else { return }
        fail(id, with: RPCError(code: .deadlineExceeded, message: "the call did not finish within its deadline (grpc-timeout)"))
        flush()
    }
}
