import AsyncHTTPClient
import Foundation
import NIOCore

/// Output as frames: Docker's `/containers/{id}/logs` with `timestamps=1`, demultiplexed by stream.
extension DockerRuntime {
    public func readLogs(taskID: String, query: LogQuery,
                         emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> TaskOutcome? {
        guard !query.streams.isEmpty else { return query.follow ? try await wait(taskID: taskID) : nil }
        try await withContainer(taskID) { id in
            // Docker's `tail` counts lines of both streams, and it counts lines, not bytes: ask for
            // a few and for more while the answer falls short of the lines (or bytes) wanted and
            // Docker may have more. Both streams are always read, so the count means the same.
            var lines: Int? = query.tailLines ?? max(128, query.limitBytes / 64)
            var past: [LogFrame] = [], read: [LogFrame] = []
            while true {
                let collected = LogFrameBuffer(limit: query.tailLines == nil ? query.limitBytes : nil)
                let (count, _) = try await fetchFrames(id, taskID: taskID, query: query, lines: lines, follow: false) {
                    await collected.add($0)
                }
                read = await collected.frames
                past = read.filter(query.wants)
                guard let asked = lines, count >= asked else { break }
                let enough = if let tail = query.tailLines {
                    past.reduce(0) { $0 + $1.bytes.count { $0 == UInt8(ascii: "\n") } } >= tail
                } else {
                    past.reduce(0) { $0 + $1.bytes.count } >= query.limitBytes
                }
                if enough { break }
                lines = asked >= 1 << 20 ? nil : asked * 8
            }
            let selected = LogSelection.select(past, query)
            if !selected.isEmpty { try await emit(selected) }
            guard query.follow else { return }
            // Then what came after: Docker's `since` keeps lines at or after a time, and the times
            // read here are cut to milliseconds, so the lines of that last millisecond come again;
            // those already read are skipped once each.
            var following = query
            var repeats: [LogFrame] = []
            if let last = read.map(\.unixMs).max() {
                following.sinceUnixMs = max(last, query.sinceUnixMs ?? 0)
                repeats = read.filter { $0.unixMs == last }
            }
            let skip = RepeatSkipper(repeats)
            try await fetchFrames(id, taskID: taskID, query: following, lines: nil, follow: true) { frames in
                let fresh = await skip.fresh(frames).filter(query.wants)
                if !fresh.isEmpty { try await emit(fresh) }
            }
        }
        return query.follow ? try await wait(taskID: taskID) : nil
    }

    /// Streams the container's log frames to `emit` in batches; returns how many frames and payload
    /// bytes there were.
    @discardableResult
    func fetchFrames(_ id: String, taskID: String, query: LogQuery, lines: Int?, follow: Bool,
                     emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> (Int, Int) {
        var parameters = [("stdout", "1"), ("stderr", "1"), ("timestamps", "1"), ("tail", lines.map(String.init) ?? "all")]
        if follow { parameters.append(("follow", "1")) }
        if let since = query.sinceUnixMs {
            parameters.append(("since", String(format: "%lld.%03lld", since / 1000, since % 1000)))
        }
        let request = try api.request(.get, "/containers/\(id)/logs", query: parameters)
        let timeout = follow ? Duration.seconds(Int64.max) : configuration.requestTimeout
        let deadline: NIODeadline = follow ? .distantFuture : .now() + timeout.timeAmount
        return try await api.stream(request, operation: "logs of \(taskID)", deadline: deadline, timeout: timeout) { status, body in
            if status != 200 {
                let answer = DockerAPI.Response(status: status, body: try await body.collect(upTo: 1 << 16))
                if status == 404 { throw ContainerGone() }
                throw RuntimeError.docker(operation: "logs of \(taskID)", status: status, message: answer.message)
            }
            var demuxer = DockerLogDemuxer()
            var count = 0, total = 0
            for try await chunk in body {
                var batch: [LogFrame] = []
                demuxer.feedFrames(chunk.readableBytesView) { stream, payload in
                    let kind: LogStreamKind = stream == 2 ? .stderr : .stdout
                    let (time, bytes) = DockerTimestamp.split(payload, fallback: Int64(Date().timeIntervalSince1970 * 1000))
                    batch.append(LogFrame(stream: kind, unixMs: time, bytes: bytes))
                }
                count += batch.count
                total += batch.reduce(0) { $0 + $1.bytes.count }
                if !batch.isEmpty { try await emit(batch) }
            }
            try Task.checkCancellation()
            return (count, total)
        }
    }
}

/// Drops, from a replay that starts at the time of the last frames read, what was already read:
/// until each of those frames has come again, every frame of that instant is old (the replay is in
/// log order, and what was read is the newest of it); a later frame ends the replay.
private actor RepeatSkipper {
    private var pending: [LogFrame]
    private let last: Int64

    init(_ frames: [LogFrame]) {
        pending = frames
        last = frames.map(\.unixMs).max() ?? .min
    }

    func fresh(_ frames: [LogFrame]) -> [LogFrame] {
        frames.filter { frame in
            guard !pending.isEmpty, frame.unixMs <= last else {
                pending = []
                return true
            }
            if let index = pending.firstIndex(of: frame) { pending.remove(at: index) }
            return false
        }
    }
}
