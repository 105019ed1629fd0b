import AsyncHTTPClient
import Foundation
import NIOCore

/// One `output` message of a log follow.
public struct LogOutput: Sendable, Hashable {
    public var stream: String
    public var time: String
    public var text: String
}

/// Follows `GET /api/v1/tasks/{id}/logs?follow=true` until the task's copy ends. When the stream
/// breaks (its master died or stopped), it follows again from another master with `since` set to
/// the last output's time, skipping once each output of that instant it already delivered.
public struct LogFollower: Sendable {
    public let client: APIClient
    public let taskID: String
    /// The query parameters besides `follow` (`tail`, `since`, `stream`, `limit_bytes`).
    public var parameters: [(String, String?)]
    public var reconnectTimeout: Duration

    public init(client: APIClient, taskID: String, parameters: [(String, String?)], reconnectTimeout: Duration = .seconds(60)) {
        self.client = client
        self.taskID = taskID
        self.parameters = parameters
        self.reconnectTimeout = reconnectTimeout
    }

    /// Delivers each output to `handle`; returns the exit code the `end` message carried (nil when
    /// the copy did not exit by itself).
    public func run(_ handle: (LogOutput) async throws -> Void) async throws -> Int32? {
        var resume = LogResume()
        var start = client.currentIndex
        var unreachableSince: ContinuousClock.Instant?
        let masters = client.settings.masters
        while true {
            var query = parameters.filter { $0.0 != "since" || resume.since == nil }
            query.append(("follow", "true"))
            if let since = resume.since {
                query.append(("since", since))
                query.removeAll { $0.0 == "tail" }  // the tail was already shown
            }
            let path = "/api/v1/tasks/\(pathSegment(taskID))/logs" + Query.string(query)
            let opened: (HTTPClientResponse, String)
            do {
                opened = try await client.withFailover(start: start) { base in
                    (try await client.openStream(base: base, path: path, headers: []), base)
                }
            } catch {
                guard case .unreachable = error else { throw error }
                let now = ContinuousClock.now
                if let since = unreachableSince, since.duration(to: now) > reconnectTimeout { throw error }
                unreachableSince = unreachableSince ?? now
                try await Task.sleep(for: .milliseconds(250))  // a pause between rounds of asking
                continue
            }
            let (response, base) = opened
            guard response.status.code == 200 else {
                let body = (try? await response.body.collect(upTo: 1 << 20)).map { String(buffer: $0) } ?? ""
                // A master that cannot serve a stream now: ask the next one.
                if response.status.code == 503 {
                    start = ((masters.firstIndex(of: base) ?? 0) + 1) % masters.count
                    continue
                }
                throw OrchctlError.fromResponse(status: Int(response.status.code), body: body)
            }
            unreachableSince = nil
            resume.reconnected()
            var parser = ServerSentEventParser()
            var iterator = response.body.makeAsyncIterator()
            reading: while true {
                let chunk: ByteBuffer?
                do {
                    chunk = try await iterator.next()
                } catch {
                    if Task.isCancelled { throw CancellationError() }
                    break reading
                }
                guard let chunk else { break reading }
                for event in parser.feed(chunk.readableBytesView) {
                    switch event.event {
                    case "output":
                        guard let value = JSONValue.parse(event.data), let output = LogOutput(value) else { continue }
                        if resume.isNew(output) { try await handle(output) }
                    case "end":
                        return JSONValue.parse(event.data)?["exit_code"]?.int.map(Int32.init)
                    case "error":
                        throw OrchctlError.fromResponse(status: 502, body: event.data)
                    default:
                        break reading  // shutdown: follow again elsewhere
                    }
                }
            }
            start = ((masters.firstIndex(of: base) ?? 0) + 1) % masters.count
        }
    }
}

/// Where a broken follow goes on: after the last output's time. The server sends that instant's
/// output again (`since` keeps what is at or after it), including any from before what this
/// follow showed (cut by `tail`): until what was shown at that instant has come again, every output
/// of the instant is old; a later one ends the replay.
struct LogResume: Sendable {
    private(set) var since: String?
    private var atLastTime: [LogOutput] = []
    private var repeats: [LogOutput] = []

    /// Whether `output` was not delivered before; notes it when it is new.
    mutating func isNew(_ output: LogOutput) -> Bool {
        if !repeats.isEmpty {
            if output.time == since {
                if let index = repeats.firstIndex(of: output) { repeats.remove(at: index) }
                return false
            }
            repeats = []
        }
        if output.time != since { atLastTime = [] }
        since = output.time
        atLastTime.append(output)
        return true
    }

    /// Called for each new stream: what comes again is what was delivered at the last time.
    mutating func reconnected() {
        repeats = atLastTime
    }
}

extension LogOutput {
    init?(_ value: JSONValue) {
        guard let stream = value["stream"]?.string, let time = value["time"]?.string, let text = value["text"]?.string else { return nil }
        self.init(stream: stream, time: time, text: text)
    }
}
