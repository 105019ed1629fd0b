/// One message of the event stream: `id`, `event` and `data` as the master frames them.
public struct ServerSentEvent: Sendable, Hashable {
    /// The SSE id (`R` or `R:i`), nil for messages without one (`shutdown`, `error`).
    public var id: String?
    /// The type, "message" when the server gave none.
    public var event: String
    public var data: String

    public init(id: String? = nil, event: String = "message", data: String) {
        self.id = id
        self.event = event
        self.data = data
    }
}

/// Splits a `text/event-stream` body, fed in chunks as they arrive, into messages (the
/// WHATWG event-stream grammar: `field: value` lines, `:` comments such as keepalives, a blank
/// line ends a message; `\n`, `\r\n` and `\r` all end a line). Pure, so it is unit-tested.
public struct ServerSentEventParser: Sendable {
    private var buffer: [UInt8] = []
    private var lastWasCR = false
    private var id: String?
    private var event = ""
    private var data: [String] = []
    private var hasData = false

    public init() {}

    /// The messages completed by `bytes`.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [ServerSentEvent] where Bytes.Element == UInt8 {
        var out: [ServerSentEvent] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && lastWasCR {
                lastWasCR = false
                continue
            }
            lastWasCR = byte == UInt8(ascii: "\r")
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if let message = line(String(decoding: buffer, as: UTF8.self)) { out.append(message) }
                buffer.removeAll(keepingCapacity: true)
            } else {
                buffer.append(byte)
            }
        }
        return out
    }

    private mutating func line(_ line: String) -> ServerSentEvent? {
        if line.isEmpty {
            defer {
                id = nil
                event = ""
                data = []
                hasData = false
            }
            guard hasData else { return nil }
            return ServerSentEvent(id: id, event: event.isEmpty ? "message" : event, data: data.joined(separator: "\n"))
        }
        if line.hasPrefix(":") { return nil }
        let field: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        } else {
            field = Substring(line)
            value = ""
        }
        switch field {
        case "id": id = String(value)
        case "event": event = String(value)
        case "data":
            data.append(String(value))
            hasData = true
        default: break  // retry:, unknown fields
        }
        return nil
    }
}
