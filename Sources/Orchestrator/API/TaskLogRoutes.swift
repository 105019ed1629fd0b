import ClusterModel
import Foundation
import Hummingbird
import Store

/// `GET /api/v1/tasks/{id}/logs`: a task's output from the worker that runs (or ran) it, through any
/// master. Plain text by default; with `follow=true` a server-sent event stream of `output` messages
/// (`{"stream","time","text"}`) until the task's copy ends, then one `end` message (`{"exit_code"}`
/// when it exited) and the stream closes.
extension OrchestratorAPI {
    func taskLogs(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let id = try pathID(context, kind: "task")
        let query = try Self.logQuery(request, configuration: configuration)
        let consistency = try request.readConsistency()
        let repository = self.repository
        // The lookup is bounded by the request timeout; a follow then lasts as long as the task.
        let (task, node, revision) = try await bounded { () async throws -> (TaskRecord, NodeRecord, Int64) in
            let (found, revision) = try await repository.readTask(id, consistency: consistency)
            guard let task = found else { throw APIError.notFound("no task \"\(id)\"") }
            // A task that ended keeps its placement: its last node still holds its output.
            guard let nodeID = task.node ?? task.placement?.node else {
                throw APIError.conflict("not_placed", "task \"\(id)\" is \(task.state.rawValue) and was never placed on a node, so it has no logs")
            }
            guard let node = try await repository.readNode(nodeID, consistency: consistency).node else {
                throw APIError.conflict("node_gone", "task \"\(id)\" ran on node \"\(nodeID)\", which has left the cluster")
            }
            return (task, node, revision)
        }
        if query.follow { return try followLogs(task: task, node: node, query: query, revision: revision) }
        let logs = self.logs
        let collected = try await bounded { () async throws -> [UInt8] in
            let buffer = LogTextBuffer()
            try await Self.mapLogErrors(node: node.info.id) {
                try await logs.readLogs(task: task, node: node, query: query) { item in
                    if case .output(_, _, let bytes) = item { buffer.append(bytes) }
                }
            }
            return buffer.bytes
        }
        return Response(status: .ok,
                        headers: [.contentType: "text/plain; charset=utf-8", .orchestratorIndex: String(revision)],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: collected)))
    }

    /// The event stream of a follow. It counts against `maxEventStreams` and ends at shutdown like
    /// the event stream; errors after the headers went out end it with an `error` message.
    private func followLogs(task: TaskRecord, node: NodeRecord, query: TaskLogQuery, revision: Int64) throws -> Response {
        let maxStreams = configuration.maxEventStreams
        if streams.count >= maxStreams {
            throw Self.tooManyEventStreams(maxStreams)
        }
        let streams = self.streams, logs = self.logs, keepalive = configuration.keepaliveInterval
        let body = ResponseBody { writer in
            let (items, continuation) = AsyncStream<EventStreamRegistry.Item>.makeStream()
            guard let registration = streams.register(continuation, limit: maxStreams) else {
                try await writer.write(ByteBuffer(string: EventStreamEncoder.errorMessage(Self.tooManyEventStreams(maxStreams))))
                try await writer.finish(nil)
                return
            }
            defer { streams.unregister(registration) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await Self.mapLogErrors(node: node.info.id) {
                            try await logs.readLogs(task: task, node: node, query: query) { item in
                                continuation.yield(.frames(LogEventEncoder.message(item)))
                            }
                        }
                        continuation.finish()
                    } catch {
                        if !(error is CancellationError) { continuation.yield(.failed(APIError.from(error))) }
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: keepalive)
                        continuation.yield(.keepalive)
                    }
                }
                try await EventStreamRegistry.write(items, to: &writer, shutdownReason: "the master is shutting down; follow again with since") { text in
                    !text.hasPrefix("event: end\n")
                }
                group.cancelAll()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok,
                        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache",
                                  .accelBuffering: "no", .orchestratorIndex: String(revision)],
                        body: body)
    }

    /// Turns what the log source throws into the API's answers.
    static func mapLogErrors(node: String, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as any APIErrorConvertible {
            throw error.apiError
        } catch let error as APIError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw APIError(status: 502, code: "logs_unavailable", message: "node \"\(node)\" did not return the logs: \(error)")
        }
    }

    /// The query parameters: `limit_bytes`, `tail` (lines), `since` (RFC 3339, or seconds since
    /// 1970), `stream` (`all`, `stdout`, `stderr`), `follow` (`true`, `false`).
    static func logQuery(_ request: Request, configuration: APIConfiguration) throws(APIError) -> TaskLogQuery {
        let limit = Int(try request.int64Query("limit_bytes", range: 1...Int64(configuration.maxLogBytes)) ?? Int64(configuration.defaultLogBytes))
        let tail = try request.int64Query("tail", range: 0...1_000_000).map(Int.init)
        let follow: Bool
        switch request.query("follow") {
        case nil, "false": follow = false
        case "true": follow = true
        case let other?: throw .invalid("follow", "must be true or false, got \"\(other)\"")
        }
        let stream: TaskLogStream
        switch request.query("stream") {
        case nil: stream = .all
        case let text?:
            guard let value = TaskLogStream(rawValue: text) else { throw .invalid("stream", "must be all, stdout or stderr, got \"\(text)\"") }
            stream = value
        }
        var since: Int64?
        if let text = request.query("since") {
            guard let value = LogTime.parse(text) else {
                throw .invalid("since", "must be an RFC 3339 time (2026-01-02T15:04:05Z) or whole seconds since 1970, got \"\(text)\"")
            }
            since = value
        }
        return TaskLogQuery(follow: follow, tailLines: tail, sinceUnixMs: since, limitBytes: limit, stream: stream)
    }
}

/// Bytes gathered from `emit` calls (which the source makes one at a time).
final class LogTextBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [UInt8] = []
    func append(_ bytes: [UInt8]) { lock.withLock { storage.append(contentsOf: bytes) } }
    var bytes: [UInt8] { lock.withLock { storage } }
}

/// The times of the log API: `since` in, `time` out.
enum LogTime {
    /// What `since` accepts, as the OpenAPI document states it: whole seconds since 1970, or an
    /// RFC 3339 time (`T` and `Z` upper case, up to nine fraction digits, a zone offset allowed).
    static let pattern = #"^([0-9]{1,11}|([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]{1,9})?(Z|([+-])([01][0-9]|2[0-3]):([0-5][0-9])))$"#
    private static let expression = try! NSRegularExpression(pattern: pattern)

    /// Milliseconds since 1970 (a time before 1970 reads as 1970), or nil when `text` does not match
    /// `pattern`. A day past its month's end rolls over (2026-02-31 is 2026-03-03).
    static func parse(_ text: String) -> Int64? {
        let range = NSRange(text.startIndex..., in: text)
        guard let match = expression.firstMatch(in: text, range: range) else { return nil }
        func group(_ index: Int) -> String? {
            Range(match.range(at: index), in: text).map { String(text[$0]) }
        }
        if let seconds = Int64(text) { return seconds * 1000 }
        guard let year = group(2).flatMap(Int.init), let month = group(3).flatMap(Int.init), let day = group(4).flatMap(Int.init),
              let hour = group(5).flatMap(Int.init), let minute = group(6).flatMap(Int.init),
              let second = group(7).flatMap(Int.init) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)) else {
            return nil
        }
        var millis = Int64(date.timeIntervalSince1970) * 1000
        if let fraction = group(8) {
            millis += Int64(fraction.dropFirst().padding(toLength: 3, withPad: "0", startingAt: 0).prefix(3))!
        }
        if let sign = group(10), let offsetHours = group(11).flatMap(Int64.init), let offsetMinutes = group(12).flatMap(Int64.init) {
            let offset = (offsetHours * 60 + offsetMinutes) * 60_000
            millis += sign == "+" ? -offset : offset
        }
        return max(0, millis)
    }

    static func format(_ unixMs: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(unixMs) / 1000))
    }
}

/// The messages of a log follow.
enum LogEventEncoder {
    struct Output: Encodable {
        var stream: String
        var time: String
        var text: String
    }

    struct End: Encodable {
        var exitCode: Int32?
        enum CodingKeys: String, CodingKey { case exitCode = "exit_code" }
    }

    static func message(_ item: TaskLogItem) -> String {
        switch item {
        case .output(let stream, let unixMs, let bytes):
            EventStreamEncoder.message(id: nil, event: "output", data: APIJSON.encode(
                Output(stream: stream.rawValue, time: LogTime.format(unixMs), text: String(decoding: bytes, as: UTF8.self))))
        case .ended(let exitCode):
            EventStreamEncoder.message(id: nil, event: "end", data: APIJSON.encode(End(exitCode: exitCode)))
        }
    }
}
