import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2

// Opening calls: the three kinds of receiver, and the unary fast path that runs a call once its
// request ended.
extension GRPCFrameHandler {
    /// A new call: checks the request headers and starts the service's task.
    func open(_ id: HTTP2StreamID, headers: HPACKHeaders, endStream: Bool, context: ChannelHandlerContext) {
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
        let (handler, peers, descriptor, identity) = (streamHandler, peers, request.method, identity)
        Task {
            // The handle must be the task-local one, which `withRPCCancellationHandler` in
            // services reads; the slot hands our cancellations (resets, closes) to it.
            await withServerContextRPCCancellationHandle { handle in
                cancellation.attach(handle)
                var context = ServerContext(descriptor: descriptor, remotePeer: peers.remote, localPeer: peers.local,
                                            cancellation: handle)
                context.transportSpecific = identity
                await handler(RPCStream(descriptor: descriptor, inbound: inbound, outbound: outbound), context)
            }
        }
    }

    /// A sink call: the method accepts or refuses it now; an accepted one gets its response
    /// headers and greeting at once and stays open until the client ends it.
    func openSink(_ id: HTTP2StreamID, method: GRPCSinkMethod, request: GRPCRequestHead, endStream: Bool,
                          cancellation: CancellationSlot) {
        let path = request.path
        let call: GRPCSinkCall
        do {
            if sinkCalls[path, default: 0] >= method.maxCallsPerConnection {
                counters.refusedStreams.add(1, ordering: .relaxed)
                throw RPCError(code: .resourceExhausted, message:
                    "at most \(method.maxCallsPerConnection) calls of \(path) may be open on one connection")
            }
            call = try method.open(request.metadata, peers.remote, identity)
        } catch {
            let rpcError = error as? RPCError ?? RPCError(code: .unknown, message: "\(error)")
            let status = Status(code: Status.Code(rpcError.code), message: rpcError.message)
            write(HTTP2Frame(streamID: id, payload: .headers(.init(
                headers: GRPCResponseHeaders.trailers(status, rpcError.metadata, trailersOnly: true), endStream: true))))
            return
        }
        var stream = Stream(receiver: .sink(call), cancellation: cancellation, descriptor: request.method)
        stream.sinkPath = path
        sinkCalls[path, default: 0] += 1
        streams[id] = stream
        respond(id, with: .metadata([:]))
        for message in call.greeting { respond(id, with: .message(message)) }
        if endStream { endOfRequest(id) }
    }

    /// Tells a sink call, once, that it ended: `nil` when the client ended its side.
    func endSink(_ id: HTTP2StreamID, _ error: RPCError?) {
        guard var stream = streams[id], case .sink(let call) = stream.receiver, !stream.sinkEnded else { return }
        stream.sinkEnded = true
        streams[id] = stream
        call.end(error)
    }

    /// The client finished its request: the sequence ends, or a unary call starts.
    func endOfRequest(_ id: HTTP2StreamID) {
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
            let (request, peers, descriptor, cancellation, identity) =
                (messages[0], peers, stream.descriptor, stream.cancellation, identity)
            let task = Task {
                let answer: Outbox.Answer
                do {
                    answer = .response(try await withServerContextRPCCancellationHandle { handle in
                        cancellation.attach(handle)
                        var context = ServerContext(descriptor: descriptor, remotePeer: peers.remote, localPeer: peers.local,
                                                    cancellation: handle)
                        context.transportSpecific = identity
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
}
