import EtcdAPI
import GRPCServing
import NIOCore
import NIOEmbedded
import Testing

extension EtcdAPITestSuites {
    /// The byte-level PING interception that keeps grpc-go connections open (see `HTTP2PingResponder`).
    @Suite struct HTTP2PingResponderTests {
        static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

        static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
            let n = payload.count
            return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                    UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
        }

        static func ping(_ payload: [UInt8], ack: Bool = false) -> [UInt8] {
            frame(type: 6, flags: ack ? 1 : 0, payload: payload)
        }

        /// Feeds `bytes` in pieces of the given sizes (the rest in one piece) and returns what passed
        /// through to the next handler and what was written back to the peer.
        static func run(_ bytes: [UInt8], side: HTTP2PingResponder.Side, pieces: [Int]) throws -> (passed: [UInt8], written: [UInt8], answered: Int) {
            let counter = SharedCounter()
            let channel = EmbeddedChannel(handler: HTTP2PingResponder(side: side, counter: counter))
            var offset = 0
            for size in pieces + [bytes.count] where offset < bytes.count {
                let end = min(offset + size, bytes.count)
                try channel.writeInbound(channel.allocator.buffer(bytes: bytes[offset..<end]))
                offset = end
            }
            var passed: [UInt8] = []
            while let buffer = try channel.readInbound(as: ByteBuffer.self) { passed += Array(buffer.readableBytesView) }
            var written: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += Array(buffer.readableBytesView) }
            _ = try channel.finish()
            return (passed, written, counter.value)
        }

        @Test("a PING is cut out and acknowledged with its payload; everything else passes in order",
              arguments: [[], [1], [5, 3, 11], [24, 9], [30, 1, 1, 1, 1], Array(repeating: 1, count: 200)])
        func answersPings(pieces: [Int]) throws {
            let settings = Self.frame(type: 4, payload: [0, 4, 0, 0, 0xff, 0xff])
            let headers = Self.frame(type: 1, flags: 4, stream: 1, payload: Array(repeating: 7, count: 20))
            let data = Self.frame(type: 0, flags: 1, stream: 1, payload: Array(repeating: 9, count: 40))
            let ping1 = Self.ping([1, 2, 3, 4, 5, 6, 7, 8])
            let ping2 = Self.ping([8, 7, 6, 5, 4, 3, 2, 1])
            let ourAck = Self.ping([0, 0, 0, 0, 0, 0, 0, 42], ack: true)
            let input = Self.preface + settings + ping1 + headers + data + ourAck + ping2
            let result = try Self.run(input, side: .server, pieces: pieces)
            #expect(result.passed == Self.preface + settings + headers + data + ourAck)
            #expect(result.written == Self.ping([1, 2, 3, 4, 5, 6, 7, 8], ack: true) + Self.ping([8, 7, 6, 5, 4, 3, 2, 1], ack: true))
            #expect(result.answered == 2)
        }

        @Test("a client has no preface to skip: the server's first frame is parsed at once")
        func clientSide() throws {
            let settings = Self.frame(type: 4, payload: [])
            let result = try Self.run(Self.ping([9, 9, 9, 9, 9, 9, 9, 9]) + settings, side: .client, pieces: [4])
            #expect(result.passed == settings)
            #expect(result.written == Self.ping([9, 9, 9, 9, 9, 9, 9, 9], ack: true))
        }

        @Test("malformed PINGs (wrong length, non-zero stream) pass on for the HTTP/2 handler to reject")
        func malformedPingsPass() throws {
            let short = Self.frame(type: 6, payload: [1, 2, 3])
            let onStream = Self.frame(type: 6, stream: 3, payload: [1, 2, 3, 4, 5, 6, 7, 8])
            let result = try Self.run(short + onStream, side: .client, pieces: [2, 10])
            #expect(result.passed == short + onStream)
            #expect(result.written.isEmpty)
        }

        @Test("a frame whose payload spans many reads passes through whole, even if it looks like PINGs")
        func largePayloadIsOpaque() throws {
            // The payload contains bytes that would parse as a PING header if the parser lost its place.
            let payload = Array((0..<5_000).map { UInt8(truncatingIfNeeded: $0) }) + Self.ping([1, 1, 1, 1, 1, 1, 1, 1])
            let data = Self.frame(type: 0, stream: 1, payload: payload)
            let result = try Self.run(data, side: .client, pieces: [3, 700, 1, 2_000])
            #expect(result.passed == data)
            #expect(result.written.isEmpty)
        }
    }
}
