import Foundation
import Hummingbird
import Logging
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// One parsed SSE message.
struct SSEMessage {
    var id: String?
    var event: String
    var data: [String: Any]
}

/// Reads an event stream the way a client does: a background task writes the response body into
/// a buffer; `disconnect()` makes the next write fail, as a closed connection does.
struct SSEClient {
    let response: Response
    let state: State
    let writing: Task<Void, Never>

    struct ClientGone: Error {}

    final class State: Sendable {
        let buffer = Mutex("")
        let gone = Mutex(false)
        /// While set, writes wait: a client that reads nothing (its TCP window full).
        let paused = Mutex(false)
        /// Set when the body writer returns: nil error for a clean end.
        let ended = Mutex<Result<Void, any Error>?>(nil)
    }

    struct Writer: ResponseBodyWriter {
        let state: State
        mutating func write(_ b: ByteBuffer) async throws {
            while state.paused.withLock({ $0 }) && !state.gone.withLock({ $0 }) {
                try await Task.sleep(for: .milliseconds(2))
            }
            if state.gone.withLock({ $0 }) { throw ClientGone() }
            state.buffer.withLock { $0 += String(buffer: b) }
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    /// Sends the request to the router's responder directly (the test framework would wait for
    /// the end of a body that never ends).
    static func open(_ api: OrchestratorAPI, _ uri: String, headers: HTTPFields = [:], paused: Bool = false) async throws -> SSEClient {
        let responder = api.buildRouter().buildResponder()
        let request = Request(head: HTTPRequest(method: .get, scheme: "http", authority: "localhost", path: uri, headerFields: headers),
                              body: RequestBody(buffer: ByteBuffer()))
        let response = try await responder.respond(to: request, context: APIRequestContext(logger: Logger(label: "test")))
        let state = State()
        state.paused.withLock { $0 = paused }
        let writing = Task { [response] in
            let result: Result<Void, any Error>
            do {
                try await response.body.write(Writer(state: state))
                result = .success(())
            } catch {
                result = .failure(error)
            }
            state.ended.withLock { $0 = result }
        }
        return SSEClient(response: response, state: state, writing: writing)
    }

    var text: String { state.buffer.withLock { $0 } }

    var messages: [SSEMessage] {
        text.components(separatedBy: "\n\n").compactMap { block -> SSEMessage? in
            var id: String?, event: String?, data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data += line.dropFirst(6) }
            }
            guard let event else { return nil }
            let json = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:]
            return SSEMessage(id: id, event: event, data: json)
        }
    }

    /// Polls until at least `count` messages arrived.
    @discardableResult
    func waitFor(_ count: Int, timeout: Duration = .seconds(30)) async throws -> [SSEMessage] {
        try await poll(timeout: timeout, "\(count) messages; got: \(text)") { messages.count >= count }
        return messages
    }

    /// Polls until the body writer returned; the result says whether it ended cleanly.
    func waitForEnd(timeout: Duration = .seconds(30)) async throws -> Result<Void, any Error> {
        try await poll(timeout: timeout, "the stream to end") { state.ended.withLock { $0 != nil } }
        return state.ended.withLock { $0! }
    }

    /// A paused client starts reading.
    func resume() {
        state.paused.withLock { $0 = false }
    }

    /// The client goes away: the next write (an event or a keepalive) fails.
    func disconnect() {
        state.gone.withLock { $0 = true }
    }
}

/// Polls `condition` every few milliseconds until it holds; records an issue and throws after `timeout`.
/// Callers give a minute: CI runs every suite at once on two cores, where a first read can wait 10 s or more.
func poll(timeout: Duration, _ what: @autoclosure () -> String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what())")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// A `MemoryStore` whose watches are counted while open (to prove streams release them), and
/// optionally fail right after they start (to see an error reach an open stream).
final class CountingStore: DelegatingStore {
    let base: MemoryStore
    let openWatches = Mutex(0)
    let failWatches: StoreError?

    init(base: MemoryStore = MemoryStore(), failWatches: StoreError? = nil) {
        self.base = base
        self.failWatches = failWatches
    }


    func watch(key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64, prevKV: Bool) -> AsyncThrowingStream<WatchResponse, any Error> {
        let upstream = base.watch(key: key, rangeEnd: rangeEnd, fromRevision: fromRevision, prevKV: prevKV)
        let failure = failWatches
        openWatches.withLock { $0 += 1 }
        return AsyncThrowingStream { continuation in
            let relay = Task {
                if let failure {
                    continuation.finish(throwing: failure)
                    return
                }
                do {
                    for try await response in upstream { continuation.yield(response) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { [self] _ in
                relay.cancel()
                openWatches.withLock { $0 -= 1 }
            }
        }
    }
}
