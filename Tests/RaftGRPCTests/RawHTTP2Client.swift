import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Synchronization

/// An HTTP/2 client that writes frames as the test composes them: what a well-behaved gRPC client
/// never does (a message left half sent, streams opened side by side on one connection) is how the
/// server's limits are reached.
final class RawHTTP2Connection: Sendable {
    /// What the server sent, in order.
    enum Event: Sendable, Equatable {
        case settings(maxConcurrentStreams: Int?)
        case headers(stream: Int, grpcStatus: String?, endStream: Bool)
        case data(stream: Int, bytes: Int)
        case reset(stream: Int, code: Int)
        case goAway(code: Int)
    }

    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame
        let events = Mutex<[Event]>([])

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            let id = Int(Int32(frame.streamID))
            let event: Event?
            switch frame.payload {
            case .settings(.settings(let settings)):
                event = .settings(maxConcurrentStreams: settings.first { $0.parameter == .maxConcurrentStreams }?.value)
            case .headers(let headers):
                event = .headers(stream: id, grpcStatus: headers.headers.first(name: "grpc-status"), endStream: headers.endStream)
            case .data(let data):
                event = .data(stream: id, bytes: data.data.readableBytes)
            case .rstStream(let code):
                event = .reset(stream: id, code: code.networkCode)
            case .goAway(_, let code, _):
                event = .goAway(code: code.networkCode)
            default:
                event = nil
            }
            if let event { events.withLock { $0.append(event) } }
        }
    }

    let channel: any Channel
    private let recorder: Recorder

    private init(channel: any Channel, recorder: Recorder) {
        self.channel = channel
        self.recorder = recorder
    }

    static func connect(port: Int) async throws -> RawHTTP2Connection {
        let recorder = Recorder()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawHTTP2Connection(channel: channel, recorder: recorder)
    }

    var events: [Event] { recorder.events.withLock { $0 } }
    var isOpen: Bool { channel.isActive }

    /// Opens stream `id` with a gRPC request's headers for `path`, plus `metadata`.
    func open(_ id: Int, path: String, metadata: [(String, String)] = [], endStream: Bool = false) async throws {
        var headers: HPACKHeaders = [":method": "POST", ":scheme": "http", ":path": path, ":authority": "127.0.0.1",
                                     "content-type": "application/grpc", "te": "trailers"]
        for (name, value) in metadata { headers.add(name: name, value: value) }
        try await write([HTTP2Frame(streamID: HTTP2StreamID(id), payload: .headers(.init(headers: headers, endStream: endStream)))])
    }

    /// Sends the 5-byte gRPC prefix of a message of `declared` bytes, then `sent` bytes of it.
    func sendMessage(on id: Int, declared: Int, sent: Int, endStream: Bool = false) async throws {
        var prefix = channel.allocator.buffer(capacity: 5)
        prefix.writeInteger(UInt8(0))
        prefix.writeInteger(UInt32(declared))
        var frames = [HTTP2Frame(streamID: HTTP2StreamID(id), payload: .data(.init(data: .byteBuffer(prefix))))]
        var left = sent
        while left > 0 {
            let n = min(left, 16_384)  // the default SETTINGS_MAX_FRAME_SIZE
            let chunk = channel.allocator.buffer(repeating: 0x5A, count: n)
            left -= n
            frames.append(HTTP2Frame(streamID: HTTP2StreamID(id),
                                     payload: .data(.init(data: .byteBuffer(chunk), endStream: endStream && left == 0))))
        }
        try await write(frames)
    }

    /// Ends stream `id` from the client's side (an empty DATA frame with END_STREAM).
    func end(_ id: Int) async throws {
        let empty = channel.allocator.buffer(capacity: 0)
        try await write([HTTP2Frame(streamID: HTTP2StreamID(id), payload: .data(.init(data: .byteBuffer(empty), endStream: true)))])
    }

    private func write(_ frames: [HTTP2Frame]) async throws {
        let channel = self.channel
        try await channel.eventLoop.submit {
            for frame in frames { channel.write(frame, promise: nil) }
            channel.flush()
        }.get()
    }

    func close() async {
        try? await channel.close().get()
    }
}
