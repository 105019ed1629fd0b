import AsyncHTTPClient
import Foundation
import NIOCore

/// Follows `GET /api/v1/events` across reconnects: when the stream ends (the master shut down,
/// was killed, or lost its store), it reconnects, to the next master first, with `Last-Event-ID`
/// set to the last id seen, so no event is missed nor shown twice. Gives up only when no master
/// has answered for `reconnectTimeout` (exit 3) or the server refuses the stream (exit 1: a bad
/// `--type`, or history already compacted).
public struct EventFollower: Sendable {
    public let client: APIClient
    /// `?type=` (nil: every type).
    public var types: [String]?
    /// The id of the last event delivered (`R` or `R:i`); the stream resumes after it.
    public private(set) var lastID: String?
    public var reconnectTimeout: Duration
    /// Called when the stream (re)connects, with the master's base URL (for `events` to report it).
    public var onConnect: (@Sendable (String) -> Void)?

    public init(client: APIClient, types: [String]? = nil, since: String? = nil, reconnectTimeout: Duration = .seconds(60)) {
        self.client = client
        self.types = types
        self.lastID = since
        self.reconnectTimeout = reconnectTimeout
    }

    /// Delivers each event (not keepalives, not `shutdown`) to `handle` until it returns false.
    public mutating func run(_ handle: (ServerSentEvent) async throws -> Bool) async throws {
        let client = self.client
        let masters = client.settings.masters
        var start = client.currentIndex
        var unreachableSince: ContinuousClock.Instant?
        while true {
            let path = "/api/v1/events" + Query.string([("type", types.flatMap { $0.isEmpty ? nil : $0.joined(separator: ",") })])
            let headers = lastID.map { [("Last-Event-ID", $0)] } ?? []
            let opened = await Self.open(client, start: start, path: path, headers: headers)
            guard case .success(let (response, base)) = opened else {
                if case .failure(let error) = opened {
                    guard case .unreachable = error else { throw error }
                    let now = ContinuousClock.now
                    if let since = unreachableSince, since.duration(to: now) > reconnectTimeout { throw error }
                    unreachableSince = unreachableSince ?? now
                }
                // A pause between rounds (not a wait for a condition: the masters are asked again).
                try await Task.sleep(for: .milliseconds(250))
                continue
            }
            let index = masters.firstIndex(of: base) ?? 0
            guard response.status.code == 200 else {
                let body = (try? await response.body.collect(upTo: 1 << 20)).map { String(buffer: $0) } ?? ""
                throw OrchctlError.fromResponse(status: Int(response.status.code), body: body)
            }
            unreachableSince = nil
            onConnect?(base)
            // Without a cursor, the stream starts after the revision in X-Orchestrator-Index: keep
            // it, so a reconnect before the first event misses nothing either.
            if lastID == nil, let revision = response.headers.first(name: "X-Orchestrator-Index"), Int64(revision) != nil {
                lastID = revision
            }
            if try await consume(response, handle) == .stop { return }
            // Move on: the master that ended the stream is probably going away.
            start = (index + 1) % masters.count
        }
    }

    enum Outcome { case stop, reconnect }

    /// Reads one stream until `handle` says stop (`.stop`) or the stream ends or breaks
    /// (`.reconnect`); throws what `handle` throws, and the server's refusal to go on.
    private mutating func consume(_ response: HTTPClientResponse, _ handle: (ServerSentEvent) async throws -> Bool) async throws -> Outcome {
        var parser = ServerSentEventParser()
        var iterator = response.body.makeAsyncIterator()
        while true {
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                return .reconnect  // the connection broke (the master died)
            }
            guard let chunk else { return .reconnect }
            for event in parser.feed(chunk.readableBytesView) {
                switch event.event {
                case "shutdown":
                    return .reconnect
                case "error":
                    let error = OrchctlError.fromResponse(status: 500, body: event.data)
                    if case .refused(_, let code, _) = error, code == "compacted" || code == "invalid_field" { throw error }
                    return .reconnect
                default:
                    if let id = event.id { lastID = id }
                    let more = try await handle(event)
                    if !more { return .stop }
                }
            }
        }
    }

    /// Opens the stream on the first master, from `start`, that answers with anything but 503.
    private static func open(_ client: APIClient, start: Int, path: String, headers: [(String, String)])
        async -> Result<(HTTPClientResponse, String), OrchctlError> {
        do {
            let opened = try await client.withFailover(start: start) { base in
                let response = try await client.openStream(base: base, path: path, headers: headers)
                // A master that cannot serve a stream now (too many streams, stopping) is as
                // good as silent: try the next.
                if response.status.code == 503 { throw StreamUnavailable() }
                return (response, base)
            }
            return .success(opened)
        } catch {
            return .failure(error)
        }
    }

    struct StreamUnavailable: Error, CustomStringConvertible {
        var description: String { "HTTP 503: cannot serve an event stream now" }
    }
}

/// Query string encoding (RFC 3986 unreserved characters kept, everything else percent-encoded).
public enum Query {
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~,")

    public static func encode(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }

    /// `?a=1&b=2` for the items with a value ("" when none has).
    public static func string(_ items: [(String, String?)]) -> String {
        let parts = items.compactMap { name, value in value.map { "\(name)=\(encode($0))" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }
}
