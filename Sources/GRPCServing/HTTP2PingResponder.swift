import NIOCore
import Synchronization

/// Answers the peer's HTTP/2 PINGs before swift-nio-http2 sees them.
///
/// Why: grpc-go (etcdctl, etcd's clientv3, etcd itself) estimates bandwidth-delay by sending a
/// PING whenever DATA arrives after its previous probe was acknowledged: about one PING per call.
/// swift-nio-http2 1.46 closes a connection (GOAWAY, ENHANCE_YOUR_CALM) after more than 200
/// PING/SETTINGS frames in 30 s, and grpc-swift-nio-transport 2.9 gives no way to raise that
/// limit. So busy grpc-go connections were cut every 200 calls. Nothing in the server's SETTINGS
/// can stop grpc-go's probing (only the client's own window options disable it).
///
/// This handler sits in front of the HTTP/2 handler, on the raw byte stream. It walks the frame
/// headers (9 bytes each, RFC 9113 §4.1), cuts every PING without the ACK flag out of the stream
/// and answers it at once with a PING ACK carrying the same 8 bytes (RFC 9113 §6.7), which is all
/// the protocol asks of a receiver. Every other byte, PING ACKs for our own keepalive PINGs
/// included, passes through unchanged and in order; a malformed PING (wrong length or stream)
/// also passes, so the HTTP/2 handler rejects it as a protocol error as it would have.
///
/// It works for either side: a server first skips the client's 24-byte connection preface; a
/// client (`EtcdStore` and the benchmark's load generator talking to etcd) starts at the first
/// frame.
public final class HTTP2PingResponder: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Which end of the connection this handler is on.
    public enum Side: Sendable {
        case server
        case client
    }

    static let frameHeaderSize = 9
    static let pingType: UInt8 = 0x6
    static let ackFlag: UInt8 = 0x1
    static let pingPayloadSize = 8

    /// Bytes of the client connection preface still to pass through (server side only).
    private var prefaceRemaining: Int
    /// Bytes of the current frame still to pass through.
    private var forwardRemaining = 0
    /// A frame header split across reads, held until complete.
    private var heldHeader: [UInt8] = []
    /// The payload of a PING being cut out, while it arrives.
    private var pingPayload: [UInt8]?
    private let counter: SharedCounter?

    /// - Parameter counter: counts the PINGs answered here (statistics), if given.
    public init(side: Side, counter: SharedCounter? = nil) {
        self.prefaceRemaining = side == .server ? 24 : 0
        self.counter = counter
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var reader = buffer
        // Bytes in [runStart, reader.readerIndex) pass on as one slice of the input.
        var runStart = reader.readerIndex

        func passRun() {
            let length = reader.readerIndex - runStart
            if length > 0, let slice = buffer.getSlice(at: runStart, length: length) {
                context.fireChannelRead(wrapInboundOut(slice))
            }
        }

        while reader.readableBytes > 0 {
            if prefaceRemaining > 0 || forwardRemaining > 0 {
                let pending = prefaceRemaining > 0 ? prefaceRemaining : forwardRemaining
                let n = min(pending, reader.readableBytes)
                reader.moveReaderIndex(forwardBy: n)
                if prefaceRemaining > 0 { prefaceRemaining -= n } else { forwardRemaining -= n }
                continue
            }
            if var payload = pingPayload {
                // Cutting a PING out: its bytes are not passed on.
                let n = min(Self.pingPayloadSize - payload.count, reader.readableBytes)
                payload += reader.readBytes(length: n)!
                if payload.count == Self.pingPayloadSize {
                    answer(payload, context: context)
                    pingPayload = nil
                } else {
                    pingPayload = payload
                }
                runStart = reader.readerIndex
                continue
            }
            if heldHeader.isEmpty, reader.readableBytes >= Self.frameHeaderSize,
               let header = reader.getBytes(at: reader.readerIndex, length: Self.frameHeaderSize) {
                if Self.isPingToAnswer(header) {
                    passRun()
                    reader.moveReaderIndex(forwardBy: Self.frameHeaderSize)
                    pingPayload = []
                    runStart = reader.readerIndex
                } else {
                    reader.moveReaderIndex(forwardBy: Self.frameHeaderSize)
                    forwardRemaining = Self.payloadLength(header)
                }
                continue
            }
            // A header split across reads: hold its bytes until it is complete.
            if heldHeader.isEmpty { passRun() }
            let n = min(Self.frameHeaderSize - heldHeader.count, reader.readableBytes)
            heldHeader += reader.readBytes(length: n)!
            runStart = reader.readerIndex
            if heldHeader.count == Self.frameHeaderSize {
                if Self.isPingToAnswer(heldHeader) {
                    pingPayload = []
                } else {
                    var held = context.channel.allocator.buffer(capacity: Self.frameHeaderSize)
                    held.writeBytes(heldHeader)
                    context.fireChannelRead(wrapInboundOut(held))
                    forwardRemaining = Self.payloadLength(heldHeader)
                }
                heldHeader = []
            }
        }
        passRun()
    }

    private func answer(_ payload: [UInt8], context: ChannelHandlerContext) {
        var ack = context.channel.allocator.buffer(capacity: Self.frameHeaderSize + Self.pingPayloadSize)
        ack.writeBytes([0, 0, UInt8(Self.pingPayloadSize), Self.pingType, Self.ackFlag, 0, 0, 0, 0])
        ack.writeBytes(payload)
        context.writeAndFlush(wrapOutboundOut(ack), promise: nil)
        counter?.increment()
    }

    static func payloadLength(_ header: [UInt8]) -> Int {
        Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
    }

    /// A well-formed PING that is not an ACK: 8 bytes of payload on stream 0.
    static func isPingToAnswer(_ header: [UInt8]) -> Bool {
        header[3] == pingType && header[4] & ackFlag == 0 && payloadLength(header) == pingPayloadSize
            && header[5] & 0x7f == 0 && header[6] == 0 && header[7] == 0 && header[8] == 0
    }
}

/// A counter shared by the connections of a server (PINGs answered, connections accepted).
public final class SharedCounter: Sendable {
    private let count = Atomic<Int>(0)

    public init() {}

    /// Counts one more.
    public func increment() {
        count.add(1, ordering: .relaxed)
    }

    /// The count so far.
    public var value: Int { count.load(ordering: .relaxed) }
}
