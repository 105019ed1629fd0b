import Foundation

/// Which of a task's two output streams some bytes came from.
public enum LogStreamKind: UInt8, Sendable, Hashable, CaseIterable {
    case stdout = 1
    case stderr = 2
}

/// Bytes a task wrote to one stream, with when they were written: Docker's own timestamp, or for
/// process tasks the time the worker first saw them (sampled every `ProcessLogTimeline.period`).
public struct LogFrame: Sendable, Hashable {
    public var stream: LogStreamKind
    /// Milliseconds since 1970.
    public var unixMs: Int64
    public var bytes: [UInt8]

    public init(stream: LogStreamKind, unixMs: Int64, bytes: [UInt8]) {
        self.stream = stream
        self.unixMs = unixMs
        self.bytes = bytes
    }
}

/// What part of a task's output to read, as `GET /api/v1/tasks/{id}/logs` asks for it.
public struct LogQuery: Sendable, Hashable {
    /// Keep reading new output until the instance ends.
    public var follow: Bool
    /// Only the last lines of past output (nil: no line limit).
    public var tailLines: Int?
    /// Only output written at or after this time, in milliseconds since 1970.
    public var sinceUnixMs: Int64?
    /// At most this many bytes of past output, the newest.
    public var limitBytes: Int
    /// The streams wanted.
    public var streams: Set<LogStreamKind>

    public init(follow: Bool = false, tailLines: Int? = nil, sinceUnixMs: Int64? = nil,
                limitBytes: Int = defaultLogLimit, streams: Set<LogStreamKind> = Set(LogStreamKind.allCases)) {
        self.follow = follow
        self.tailLines = tailLines
        self.sinceUnixMs = sinceUnixMs
        self.limitBytes = limitBytes
        self.streams = streams
    }

    /// Whether new output (seen while following) belongs to the answer; `since` in the future
    /// holds it back until then, as Docker does.
    func wants(_ frame: LogFrame) -> Bool {
        streams.contains(frame.stream) && frame.unixMs >= (sinceUnixMs ?? .min)
    }
}

/// Choosing the past output a `LogQuery` asks for from frames in the order they were written: a
/// pure function, so every runtime and the kept output of finished tasks answer alike.
public enum LogSelection {
    /// The frames of the wanted streams written at or after `since`, cut to the last `tailLines`
    /// lines, then to the last `limitBytes` bytes (a frame cut at its front keeps its newest bytes).
    /// A line is a run of bytes ending in `\n`; unterminated output at the end counts as a line.
    public static func select(_ frames: [LogFrame], _ query: LogQuery) -> [LogFrame] {
        var selected = frames.filter { query.wants($0) && !$0.bytes.isEmpty }
        if let lines = query.tailLines { selected = tail(selected, lines: max(0, lines)) }
        return suffix(selected, bytes: max(0, query.limitBytes))
    }

    static func tail(_ frames: [LogFrame], lines: Int) -> [LogFrame] {
        guard lines > 0 else { return [] }
        // Walk back counting line ends; the newline that ends the output itself opens no new line.
        var newlines = 0
        var skipTrailing = frames.last?.bytes.last == UInt8(ascii: "\n")
        for index in frames.indices.reversed() {
            let bytes = frames[index].bytes
            for offset in bytes.indices.reversed() where bytes[offset] == UInt8(ascii: "\n") {
                if skipTrailing { skipTrailing = false; continue }
                newlines += 1
                if newlines == lines {
                    var result = Array(frames[index...])
                    result[0].bytes = Array(bytes[(offset + 1)...])
                    return result.filter { !$0.bytes.isEmpty }
                }
            }
            skipTrailing = false
        }
        return frames
    }

    static func suffix(_ frames: [LogFrame], bytes limit: Int) -> [LogFrame] {
        var remaining = limit
        var result: [LogFrame] = []
        for frame in frames.reversed() {
            guard remaining > 0 else { break }
            var kept = frame
            if frame.bytes.count > remaining { kept.bytes = Array(frame.bytes.suffix(remaining)) }
            remaining -= kept.bytes.count
            result.append(kept)
        }
        return result.reversed()
    }

    /// The bytes of `frames` joined, for a plain-text answer.
    public static func text(_ frames: [LogFrame]) -> [UInt8] {
        frames.flatMap(\.bytes)
    }
}

/// Frames gathered across `emit` calls, keeping about the newest `limit` bytes (the streams,
/// `since` and `tail` are for the reader to have applied).
actor LogFrameBuffer {
    /// nil: keep everything.
    let limit: Int?
    private(set) var frames: [LogFrame] = []
    private var bytes = 0

    init(limit: Int?) { self.limit = limit }

    func add(_ batch: [LogFrame]) {
        frames.append(contentsOf: batch)
        bytes += batch.reduce(0) { $0 + $1.bytes.count }
        if let limit, bytes > 2 * max(limit, 1 << 16) {
            frames = LogSelection.suffix(frames, bytes: limit)
            bytes = frames.reduce(0) { $0 + $1.bytes.count }
        }
    }
}

/// The file format of kept output (`FinishedLogs`): a magic line, then per frame its stream (1 byte),
/// time (8 bytes) and length (4 bytes), big endian, and the bytes. Files from before the format
/// (plain output) read as one stdout frame.
enum FramedLogCodec {
    static let magic = Array("ORCHLOG1\n".utf8)

    static func encode(_ frames: [LogFrame]) -> [UInt8] {
        var out = magic
        for frame in frames {
            out.append(frame.stream.rawValue)
            withUnsafeBytes(of: frame.unixMs.bigEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt32(frame.bytes.count).bigEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: frame.bytes)
        }
        return out
    }

    /// The frames of a file; a truncated last frame is dropped.
    static func decode(_ data: [UInt8]) -> [LogFrame] {
        guard data.starts(with: magic) else {
            return data.isEmpty ? [] : [LogFrame(stream: .stdout, unixMs: 0, bytes: data)]
        }
        var frames: [LogFrame] = []
        var at = magic.count
        while at + 13 <= data.count {
            guard let stream = LogStreamKind(rawValue: data[at]) else { break }
            let time = data[(at + 1)..<(at + 9)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let length = Int(data[(at + 9)..<(at + 13)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            at += 13
            guard at + length <= data.count else { break }
            frames.append(LogFrame(stream: stream, unixMs: Int64(bitPattern: time), bytes: Array(data[at..<(at + length)])))
            at += length
        }
        return frames
    }
}

/// Docker's `timestamps=1` log lines: `2024-05-01T12:00:00.123456789Z payload`. The time is cut off
/// and parsed to milliseconds; a payload without one keeps `fallback`.
enum DockerTimestamp {
    static func split(_ payload: [UInt8], fallback: Int64) -> (unixMs: Int64, bytes: [UInt8]) {
        guard let space = payload.prefix(40).firstIndex(of: UInt8(ascii: " ")),
              let time = parse(payload[..<space]) else { return (fallback, payload) }
        return (time, Array(payload[(space + 1)...]))
    }

    /// RFC 3339 in UTC with up to nine fraction digits. Done by hand (days from the civil date,
    /// Howard Hinnant's algorithm): it runs once per log line, where a Calendar would cost more
    /// than the line.
    static func parse(_ text: ArraySlice<UInt8>) -> Int64? {
        let b = Array(text)
        guard b.count >= 20, b.last == UInt8(ascii: "Z"), b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T"), b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for i in range {
                guard b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(b[i] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
              let minute = number(14..<16), let second = number(17..<19), (1...12).contains(month), (1...31).contains(day) else { return nil }
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        var millis = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000
        if b.count > 20 {
            guard b[19] == UInt8(ascii: "."), b.count > 21 else { return nil }
            let digits = b[20..<(b.count - 1)]
            guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
            let firstThree = Array(digits.prefix(3)) + Array(repeating: UInt8(ascii: "0"), count: max(0, 3 - digits.count))
            millis += firstThree.reduce(Int64(0)) { $0 * 10 + Int64($1 - UInt8(ascii: "0")) }
        }
        return millis
    }
}
