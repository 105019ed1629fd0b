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

    private let configuration: DirectHTTP2ServerTransport.Configuration
    private let streamHandler: StreamHandler
    private var streams: [HTTP2StreamID: Stream] = [:]
    private var context: ChannelHandlerContext?
    private var outbox: Outbox?
    private var peers = (remote: "unknown", local: "unknown")
    private var lastStreamID = HTTP2StreamID.rootStream
    private var draining = false
    private var needsFlush = false
    /// What the client may still send on the connection, by our own count (HTTP/2 starts at 65,535).
    /// Counted here rather than taken from swift-nio-http2's window events: a WINDOW_UPDATE we
    /// write while the socket is not writable waits in its buffer and is not yet in its count, so
    /// every DATA frame meanwhile asked for another update, and enough of them overflowed the
    /// client's window (a FLOW_CONTROL_ERROR that closed the connection, seen once in CI).
    private var connectionWindow = 65_535

    init(configuration: DirectHTTP2ServerTransport.Configuration, streamHandler: @escaping StreamHandler) {
        self.configuration = configuration
        self.streamHandler = streamHandler
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        outbox = Outbox(handler: NIOLoopBound(self, eventLoop: context.eventLoop), eventLoop: context.eventLoop)
        peers = (Self.describe(context.channel.remoteAddress), Self.describe(context.channel.localAddress))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll(reason: "the connection closed")
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll(reason: "the connection closed")
        context.fireChannelInactive()
    }

    private func closeAll(reason: String) {
        outbox?.close()
        outbox = nil
        let open = streams
        streams = [:]
        for stream in open.values {
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
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            if let stream = streams.removeValue(forKey: closed.streamID) {
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

    /// A new call: checks the request headers and starts the service's task.
    private func open(_ id: HTTP2StreamID, headers: HPACKHeaders, endStream: Bool, context: ChannelHandlerContext) {
        guard !draining, let outbox else {
            write(HTTP2Frame(streamID: id, payload: .rstStream(.refusedStream)))
            return
        }
        lastStreamID = max(lastStreamID, id)
        let request: GRPCRequestHead
        do {
            request = try GRPCRequestHead(headers)
        } catch {
            write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: error.responseHeaders, endStream: true))))
            return
        }
        let cancellation = CancellationSlot()
        if let method = configuration.sinkMethods[request.path] {
            openSink(id, method: method, request: request, endStream: endStream, cancellation: cancellation)
            return
        }
        if let method = configuration.unaryMethods[request.path] {
            // The fast path: no router, executor or async sequence for a one-message call.
            var stream = Stream(receiver: .unary(method, messages: []), cancellation: cancellation, descriptor: request.method)
            // grpc-swift's executor enforces the deadline on routed calls; here we do: when it
            // passes, the client gets DEADLINE_EXCEEDED and the call's task is cancelled.
            if let timeout = request.metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(GRPCTimeout.parse) {
                let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
                stream.deadline = context.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
                    handler.value.deadlinePassed(id)
                }
            }
            streams[id] = stream
            if endStream { endOfRequest(id) }
            return
        }
        let (parts, continuation) = AsyncThrowingStream<RPCRequestPart<[UInt8]>, any Error>.makeStream()
        continuation.yield(.metadata(request.metadata))
        if endStream { continuation.finish() }
        var stream = Stream(receiver: .streaming(continuation), cancellation: cancellation, descriptor: request.method)
        stream.closedRemotely = endStream
        let backpressure = WriteBackpressure(limit: configuration.streamWriteBufferBytes)
        stream.backpressure = backpressure
        streams[id] = stream

        let consumed = ConsumptionCounter(streamID: id, outbox: outbox, threshold: configuration.streamWindowBytes / 2)
        let inbound = RPCAsyncSequence<RPCRequestPart<[UInt8]>, any Error>(
            wrapping: CountingParts(base: parts, counter: consumed))
        let outbound = RPCWriter<RPCResponsePart<[UInt8]>>.Closable(
            wrapping: StreamWriter(streamID: id, outbox: outbox, backpressure: backpressure))
        let (handler, peers, descriptor) = (streamHandler, peers, request.method)
        Task {
            // The handle must be the task-local one, which `withRPCCancellationHandler` in
            // services reads; the slot hands our cancellations (resets, closes) to it.
            await withServerContextRPCCancellationHandle { handle in
                cancellation.attach(handle)
                let context = ServerContext(descriptor: descriptor, remotePeer: peers.remote, localPeer: peers.local,
                                            cancellation: handle)
                await handler(RPCStream(descriptor: descriptor, inbound: inbound, outbound: outbound), context)
            }
        }
    }

    /// A sink call: the method accepts or refuses it now; an accepted one gets its response
    /// headers and greeting at once and stays open until the client ends it.
    private func openSink(_ id: HTTP2StreamID, method: GRPCSinkMethod, request: GRPCRequestHead, endStream: Bool,
                          cancellation: CancellationSlot) {
        let call: GRPCSinkCall
        do {
            call = try method.open(request.metadata, peers.remote)
        } catch {
            let rpcError = error as? RPCError ?? RPCError(code: .unknown, message: "\(error)")
            let status = Status(code: Status.Code(rpcError.code), message: rpcError.message)
            write(HTTP2Frame(streamID: id, payload: .headers(.init(
                headers: GRPCResponseHeaders.trailers(status, rpcError.metadata, trailersOnly: true), endStream: true))))
            return
        }
        streams[id] = Stream(receiver: .sink(call), cancellation: cancellation, descriptor: request.method)
        respond(id, with: .metadata([:]))
        for message in call.greeting { respond(id, with: .message(message)) }
        if endStream { endOfRequest(id) }
    }

    /// Tells a sink call, once, that it ended: `nil` when the client ended its side.
    private func endSink(_ id: HTTP2StreamID, _ error: RPCError?) {
        guard var stream = streams[id], case .sink(let call) = stream.receiver, !stream.sinkEnded else { return }
        stream.sinkEnded = true
        streams[id] = stream
        call.end(error)
    }

    private func received(_ bytes: ByteBuffer, on id: HTTP2StreamID, endStream: Bool, flowControlled: Int) {
        // Taken out of the table while it grows, so its buffer is not shared and appends in place
        // (a copy left in the table made every DATA frame of a large message copy all before it).
        guard var stream = streams.removeValue(forKey: id) else { return }
        if stream.closedRemotely {
            streams[id] = stream
            return
        }
        stream.reader.append(bytes)
        if case .sink = stream.receiver {
            // A sink takes each message as soon as it is whole, so what is buffered here is at
            // most one partial message (bounded by the message limit): the window re-opens as
            // bytes arrive, in steps of half of it. Waiting for whole messages instead would stall
            // a message larger than the window (a Raft snapshot) forever.
            stream.unacknowledged += flowControlled
            if stream.unacknowledged >= configuration.streamWindowBytes / 2 {
                write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: stream.unacknowledged)))
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
            if endStream && stream.reader.hasPartialMessage {
                throw RPCError(code: .internalError, message: "the request ended inside a message")
            }
            streams[id] = stream
            if endStream { endOfRequest(id) }
        } catch {
            streams[id] = stream
            let rpcError = error as? RPCError ?? RPCError(code: .internalError, message: "\(error)")
            fail(id, with: rpcError)
        }
    }

    private func endInbound(_ id: HTTP2StreamID) {
        guard let stream = streams[id], !stream.closedRemotely else { return }
        endOfRequest(id)
    }

    /// The client finished its request: the sequence ends, or a unary call starts.
    private func endOfRequest(_ id: HTTP2StreamID) {
        guard var stream = streams[id], !stream.closedRemotely else { return }
        stream.closedRemotely = true
        streams[id] = stream
        switch stream.receiver {
        case .streaming(let inbound):
            inbound.finish()
        case .sink:
            endSink(id, nil)
            respond(id, with: .status(Status(code: .ok, message: ""), [:]))
        case .unary(let method, let messages):
            guard messages.count == 1, let outbox else {
                fail(id, with: RPCError(code: .internalError,
                                        message: "a unary call takes exactly one request message, got \(messages.count)"))
                return
            }
            let (request, peers, descriptor, cancellation) = (messages[0], peers, stream.descriptor, stream.cancellation)
            let task = Task {
                let answer: Outbox.Answer
                do {
                    answer = .response(try await withServerContextRPCCancellationHandle { handle in
                        cancellation.attach(handle)
                        let context = ServerContext(descriptor: descriptor, remotePeer: peers.remote, localPeer: peers.local,
                                                    cancellation: handle)
                        return try await method.handle(request, context)
                    })
                } catch let error as RPCError {
                    answer = .failure(Status(code: Status.Code(error.code), message: error.message), error.metadata)
                } catch {
                    answer = .failure(Status(code: .unknown, message: "\(error)"), [:])
                }
                outbox.answer(answer, on: id)
            }
            cancellation.attach(task)
        }
    }

    private func reset(_ id: HTTP2StreamID, message: String) {
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
    private func fail(_ id: HTTP2StreamID, with error: RPCError) {
        respond(id, with: .status(Status(code: Status.Code(error.code), message: error.message), [:]))
        guard var stream = streams[id] else { return }
        stream.closedRemotely = true  // nothing more is read from it
        streams[id] = stream
        stream.cancellation.cancel()
        stream.backpressure?.close()
        if case .streaming(let inbound) = stream.receiver { inbound.finish(throwing: error) }
        endSink(id, error)
    }

    /// A fast-path call outlived its `grpc-timeout`: DEADLINE_EXCEEDED goes out now, the call's
    /// task is cancelled, and its answer, if it still comes, is dropped.
    private func deadlinePassed(_ id: HTTP2StreamID) {
        guard let stream = streams[id], !stream.closedLocally else { return }
        fail(id, with: RPCError(code: .deadlineExceeded, message: "the call did not finish within its deadline (grpc-timeout)"))
        flush()
    }

    // MARK: Outbound

    /// Writes one response part of stream `id` (on the event loop; the caller flushes).
    /// `counted`: a message its stream's `WriteBackpressure` counts, released once the socket has
    /// taken it (or the write failed), or now if it is dropped.
    func respond(_ id: HTTP2StreamID, with part: RPCResponsePart<[UInt8]>, counted: Bool = false) {
        guard var stream = streams[id], !stream.closedLocally, let context else {
            // Dropped: a stream that is gone had its backpressure closed; an ended one releases.
            if counted, case .message(let message) = part { streams[id]?.backpressure?.written(message.count) }
            return
        }
        switch part {
        case .metadata(let metadata):
            stream.sentHeaders = true
            write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: GRPCResponseHeaders.head(metadata)))))
        case .message(let message):
            if !stream.sentHeaders {
                stream.sentHeaders = true
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
            stream.closedLocally = true
            stream.deadline?.cancel()
            stream.deadline = nil
            let headers = GRPCResponseHeaders.trailers(status, metadata, trailersOnly: !stream.sentHeaders)
            write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: true))))
        }
        streams[id] = stream
    }

    /// Re-opens `id`'s receive window by what its service has read.
    func replenish(_ id: HTTP2StreamID, by bytes: Int) {
        guard let stream = streams[id], !stream.closedRemotely else { return }
        write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes)))
    }

    func flush() {
        needsFlush = false
        context?.flush()
    }

    private func write(_ frame: HTTP2Frame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        needsFlush = true
    }

    private static func describe(_ address: SocketAddress?) -> String {
        switch address {
        case .v4(let a)?: "ipv4:\(a.host):\(address?.port ?? 0)"
        case .v6(let a)?: "ipv6:[\(a.host)]:\(address?.port ?? 0)"
        case .unixDomainSocket?: "unix:\(address?.pathname ?? "")"
        case nil: "unknown"
        }
    }
}
