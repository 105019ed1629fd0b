import GRPCCore
import NIOCore
import NIOHPACK

/// The request head of a gRPC call over HTTP/2 (gRPC's PROTOCOL-HTTP2.md): method from `:path`,
/// custom metadata from the other headers (`grpc-timeout` included, which the server's executor
/// turns into a deadline).
struct GRPCRequestHead {
    var method: MethodDescriptor
    var metadata: Metadata
    /// `:path`, e.g. "/etcdserverpb.KV/Put".
    var path: String

    /// A request the transport answers itself, without starting a call.
    struct Refusal: Error {
        var responseHeaders: HPACKHeaders
    }

    init(_ headers: HPACKHeaders) throws(Refusal) {
        var path: String?
        var httpMethod: String?
        var contentType: String?
        var metadata = Metadata()
        for (name, value, _) in headers {
            if name.first == ":" {
                if name == ":path" { path = value } else if name == ":method" { httpMethod = value }
                continue
            }
            switch name {
            case "content-type": contentType = value
            case "te": break
            default:
                if name.hasSuffix("-bin") {
                    if let bytes = Base64.decode(value) { metadata.addBinary(bytes, forKey: name) }
                } else {
                    metadata.addString(value, forKey: name)
                }
            }
        }
        guard httpMethod == "POST" else {
            throw Refusal(responseHeaders: [":status": "405"])
        }
        guard let contentType, contentType.hasPrefix("application/grpc") else {
            throw Refusal(responseHeaders: [":status": "415"])
        }
        // "/package.Service/Method"
        guard let path, path.first == "/", let slash = path.lastIndex(of: "/"), slash != path.startIndex else {
            throw Refusal(responseHeaders: GRPCResponseHeaders.trailers(
                Status(code: .unimplemented, message: "malformed method path \(path ?? "(none)")"), [:], trailersOnly: true))
        }
        let service = path[path.index(after: path.startIndex)..<slash]
        let name = path[path.index(after: slash)...]
        self.method = MethodDescriptor(fullyQualifiedService: String(service), method: String(name))
        self.metadata = metadata
        self.path = path
    }
}

/// The `grpc-timeout` request header (gRPC's PROTOCOL-HTTP2.md): at most 8 digits and a unit,
/// H, M, S, m, u or n (hours down to nanoseconds).
enum GRPCTimeout {
    /// The timeout, or nil when the value is malformed (the call then runs without one, as
    /// grpc-swift's server does).
    static func parse(_ value: String) -> Duration? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9, let unit = utf8.last else { return nil }
        var amount: Int64 = 0
        for digit in utf8.dropLast() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        switch unit {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled &+ attoseconds / 1_000_000_000
    }
}

/// Response headers and trailers.
enum GRPCResponseHeaders {
    /// The common head and trailers, built once.
    private static let plainHead: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    static func head(_ metadata: Metadata) -> HPACKHeaders {
        if metadata.isEmpty { return plainHead }
        var headers = plainHead
        add(metadata, to: &headers)
        return headers
    }

    /// Trailers; `trailersOnly` when no HEADERS went out before (then they carry the head too).
    static func trailers(_ status: Status, _ metadata: Metadata, trailersOnly: Bool) -> HPACKHeaders {
        if !trailersOnly, status.code == .ok, status.message.isEmpty, metadata.isEmpty { return okTrailers }
        var headers: HPACKHeaders = trailersOnly ? [":status": "200", "content-type": "application/grpc"] : [:]
        headers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty { headers.add(name: "grpc-message", value: percentEncoded(status.message)) }
        add(metadata, to: &headers)
        return headers
    }

    private static func add(_ metadata: Metadata, to headers: inout HPACKHeaders) {
        for (key, value) in metadata {
            switch value {
            case .string(let text): headers.add(name: key.lowercased(), value: text)
            case .binary(let bytes):
                let name = key.lowercased().hasSuffix("-bin") ? key.lowercased() : key.lowercased() + "-bin"
                headers.add(name: name, value: Base64.encode(bytes))
            }
        }
    }

    /// grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself.
    static func percentEncoded(_ message: String) -> String {
        let utf8 = message.utf8
        if utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != 0x25 }) { return message }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count * 2)
        for byte in utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != 0x25 {
                out.append(byte)
            } else {
                out.append(0x25)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Reassembles gRPC's length-prefixed messages (1 byte compressed flag, 4 bytes big-endian length,
/// then the message) from DATA frames that may split or join them anywhere.
struct GRPCMessageReader {
    private var buffer: ByteBuffer?

    mutating func append(_ bytes: ByteBuffer) {
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = bytes
        } else {
            var incoming = bytes
            buffer!.writeBuffer(&incoming)
        }
    }

    /// The next whole message, nil until one is complete.
    mutating func next(limit: Int) throws(RPCError) -> [UInt8]? {
        guard var buffer, buffer.readableBytes >= 5,
              let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self) else { return nil }
        if flag != 0 {
            throw RPCError(code: .unimplemented, message: "compressed messages are not supported; send them uncompressed")
        }
        if Int(length) > limit {
            throw RPCError(code: .resourceExhausted,
                           message: "message of \(length) bytes is larger than the limit of \(limit) bytes")
        }
        guard buffer.readableBytes >= 5 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let message = buffer.readBytes(length: Int(length)) ?? []
        // Nothing left: let go of the slice, which keeps the whole receive buffer it came from
        // alive (a long-lived stream would hold one for good, and the channel could not reuse it).
        self.buffer = buffer.readableBytes == 0 ? nil : buffer
        return message
    }

    /// Whether bytes of an unfinished message are waiting.
    var hasPartialMessage: Bool { (buffer?.readableBytes ?? 0) > 0 }

    /// Bytes received and not yet returned as messages.
    var bufferedBytes: Int { buffer?.readableBytes ?? 0 }
}

/// Standard base64 (padded) for `-bin` metadata; decoding also takes unpadded input, as gRPC allows.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for c in text.utf8 where c != UInt8(ascii: "=") {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(c - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(c - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"), UInt8(ascii: "-"): values.append(62)
            case UInt8(ascii: "/"), UInt8(ascii: "_"): values.append(63)
            default: return nil
            }
        }
        if values.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 3 / 4)
        var i = 0
        while i < values.count {
            let n = min(4, values.count - i)
            let v0 = values[i], v1 = values[i + 1]
            out.append(v0 << 2 | v1 >> 4)
            if n > 2 { out.append((v1 & 0x0F) << 4 | values[i + 2] >> 2) }
            if n > 3 { out.append((values[i + 2] & 0x03) << 6 | values[i + 3]) }
            i += 4
        }
        return out
    }
}
