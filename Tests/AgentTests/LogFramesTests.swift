@testable import Agent
import Foundation
import Testing

/// The pure parts of task logs: selection, the kept-output format, Docker's timestamps and frames,
/// and how process output gets its times.
@Suite struct LogFramesTests {
    static func frame(_ stream: LogStreamKind, _ ms: Int64, _ text: String) -> LogFrame {
        LogFrame(stream: stream, unixMs: ms, bytes: Array(text.utf8))
    }

    static let written = [
        frame(.stdout, 1000, "a1\na2\n"), frame(.stderr, 1000, "e1\n"),
        frame(.stdout, 2000, "a3\n"), frame(.stderr, 3000, "e2\ne3"),
    ]

    @Test("selection: streams, since, tail lines, then the byte limit, in that order", arguments: [
        (LogQuery(), "a1\na2\ne1\na3\ne2\ne3"),
        (LogQuery(streams: [.stdout]), "a1\na2\na3\n"),
        (LogQuery(streams: [.stderr]), "e1\ne2\ne3"),
        (LogQuery(streams: []), ""),
        (LogQuery(sinceUnixMs: 2000), "a3\ne2\ne3"),
        (LogQuery(sinceUnixMs: 3001), ""),
        (LogQuery(tailLines: 0), ""),
        (LogQuery(tailLines: 1), "e3"),   // the unterminated end is a line
        (LogQuery(tailLines: 2), "e2\ne3"),
        (LogQuery(tailLines: 4), "e1\na3\ne2\ne3"),
        (LogQuery(tailLines: 100), "a1\na2\ne1\na3\ne2\ne3"),
        (LogQuery(tailLines: 2, streams: [.stdout]), "a2\na3\n"),  // a terminated end opens no line
        (LogQuery(limitBytes: 4), "2\ne3"),
        (LogQuery(limitBytes: 6), "\ne2\ne3"),
        (LogQuery(tailLines: 3, limitBytes: 3), "\ne3"),
    ])
    func selection(query: LogQuery, expected: String) {
        let text = String(decoding: LogSelection.text(LogSelection.select(Self.written, query)), as: UTF8.self)
        #expect(text == expected)
    }

    @Test("a frame cut by the tail keeps its stream and time")
    func tailCutsAFrame() {
        let selected = LogSelection.select(Self.written, LogQuery(tailLines: 1, streams: [.stdout]))
        #expect(selected == [Self.frame(.stdout, 2000, "a3\n")])
        let cut = LogSelection.select([Self.frame(.stderr, 7, "x\ny\nz\n")], LogQuery(tailLines: 2))
        #expect(cut == [Self.frame(.stderr, 7, "y\nz\n")])
    }

    @Test("kept output: frames round-trip; a truncated file loses only its last frame; an old plain file reads as stdout")
    func codec() {
        let encoded = FramedLogCodec.encode(Self.written)
        #expect(FramedLogCodec.decode(encoded) == Self.written)
        #expect(FramedLogCodec.decode(Array(encoded.dropLast(1))) == Array(Self.written.dropLast()))
        #expect(FramedLogCodec.decode(Array("plain\n".utf8)) == [Self.frame(.stdout, 0, "plain\n")])
        #expect(FramedLogCodec.decode([]) == [])
    }

    @Test("Docker's timestamps: nanoseconds cut to milliseconds; a line without one keeps the fallback")
    func dockerTimestamps() {
        let (time, bytes) = DockerTimestamp.split(Array("2026-12-06T19:40:25.123456789Z hello\n".utf8), fallback: 5)
        #expect(time == 1_796_586_025_123)
        #expect(bytes == Array("hello\n".utf8))
        #expect(DockerTimestamp.split(Array("2026-12-06T19:40:25Z x".utf8), fallback: 5).unixMs == 1_796_586_025_000)
        #expect(DockerTimestamp.split(Array("no time here".utf8), fallback: 5) == (5, Array("no time here".utf8)))
    }

    @Test("Docker's multiplexed stream: whole frames with their stream, however the chunks are cut")
    func demuxFrames() {
        func header(_ stream: UInt8, _ size: Int) -> [UInt8] { [stream, 0, 0, 0, 0, 0, UInt8(size >> 8), UInt8(size & 0xff)] }
        let stream = header(1, 3) + Array("ab\n".utf8) + header(2, 2) + Array("e\n".utf8) + header(1, 0)
        for cut in 1...stream.count {
            var demuxer = DockerLogDemuxer()
            var got: [(UInt8, String)] = []
            for chunk in stride(from: 0, to: stream.count, by: cut).map({ Array(stream[$0..<min($0 + cut, stream.count)]) }) {
                demuxer.feedFrames(chunk) { got.append(($0, String(decoding: $1, as: UTF8.self))) }
            }
            #expect(got.map(\.0) == [1, 2, 1] && got.map(\.1) == ["ab\n", "e\n", ""], "chunks of \(cut)")
        }
    }

    @Test("process output: bytes take the time of the first record that covers them; past the last, now; a window skips older bytes")
    func timeline() {
        let records = [ProcessLogTimeline.Record(unixMs: 10, stdoutSize: 3, stderrSize: 0),
                       ProcessLogTimeline.Record(unixMs: 20, stdoutSize: 3, stderrSize: 2),
                       ProcessLogTimeline.Record(unixMs: 30, stdoutSize: 6, stderrSize: 4)]
        #expect(ProcessLogTimeline.decode(records.flatMap(ProcessLogTimeline.encode)) == records)
        let frames = ProcessLogTimeline.frames(records: records, stdout: Array("ab\ncd\nef".utf8), stdoutStart: 0,
                                               stderr: Array("e1e2".utf8), stderrStart: 0, now: 99)
        #expect(frames == [Self.frame(.stdout, 10, "ab\n"), Self.frame(.stderr, 20, "e1"),
                           Self.frame(.stdout, 30, "cd\n"), Self.frame(.stderr, 30, "e2"), Self.frame(.stdout, 99, "ef")])
        // Only the last 4 bytes of stdout were read (from offset 4): "d\nef".
        let windowed = ProcessLogTimeline.frames(records: records, stdout: Array("\nef".utf8), stdoutStart: 5,
                                                 stderr: [], stderrStart: 4, now: 99)
        #expect(windowed == [Self.frame(.stdout, 30, "\n"), Self.frame(.stdout, 99, "ef")])
    }
}
