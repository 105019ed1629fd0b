import Foundation
import Hummingbird
import NIOCore
import RaftTestSupport
import Synchronization
import Testing
@testable import Orchestrator
#if canImport(Glibc)
import Glibc
#endif

/// The REST listener's connection cap: past `maxConnections` a new client waits to be accepted
/// until a connection closes, and `/metrics` shows the count and the cap.
@Suite struct ConnectionLimitTests {
    @Test("with a cap of 2, a third client is served only after one of two idle connections closes")
    func capHoldsTheThirdClient() async throws {
        let f = APIFixture { $0.maxConnections = 2 }
        try await Self.serving(f) { port in
            let first = try RawConnection(port: port), second = try RawConnection(port: port)
            defer { second.close() }
            try await Self.poll("both idle connections accepted") { f.api.connections.openConnections == 2 }

            let third = try RawConnection(port: port)
            defer { third.close() }
            try third.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            // Not accepted, so nothing comes back while the two others stay open (without the cap
            // the answer takes about a millisecond; 300 ms is a generous window to notice it).
            #expect(await third.receive(within: .milliseconds(300)).isEmpty, "the third connection was served past the cap")
            #expect(f.api.connections.openConnections == 2)

            first.close()
            let answer = await third.receive(within: .seconds(60))
            #expect(answer.hasPrefix("HTTP/1.1 200"), "the third connection is served once one closes: \(answer)")
        }
    }

    @Test("/metrics reports the open connections and the cap")
    func metrics() async throws {
        let f = APIFixture { $0.maxConnections = 7 }
        try await Self.serving(f) { port in
            let scrape = try RawConnection(port: port)
            defer { scrape.close() }
            try scrape.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            var text = ""
            try await Self.poll("the metrics") {
                text += scrape.receive(waitingMs: 0)
                return text.contains("orchestrator_http_connections_limit")
            }
            #expect(text.contains("orchestrator_http_connections_limit 7"))
            #expect(text.contains("orchestrator_http_connections 1"), "the scrape's own connection")
        }
    }

    @Test("a connection with no request in progress is closed after the idle timeout")
    func idleConnectionsClose() async throws {
        let f = APIFixture { $0.idleTimeout = .milliseconds(200) }
        try await Self.serving(f) { port in
            let idle = try RawConnection(port: port)
            defer { idle.close() }
            try await Self.poll("the server to close the idle connection") { idle.closedByPeer() }
            // (That a connection in use is served is the cap test's business: with a 200 ms idle
            // timeout a loaded machine can let the timer fire between the accept and the first
            // read, which is the timeout working, not a failure.)
        }
    }

    /// Runs the API's real server (`makeApplication`, as the master does) on a free loopback
    /// port for `body`. (HummingbirdTesting's live mode rebuilds the configuration without the
    /// connection delegate, so it cannot test the cap.)
    static func serving(_ f: APIFixture, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let port = Mutex<Int?>(nil)
        let app = try f.api.makeApplication(address: .hostname("127.0.0.1", port: 0)) { channel in
            port.withLock { $0 = channel.localAddress?.port }
        }
        let server = Task { try await app.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        try await poll("the server listening") { port.withLock { $0 } != nil }
        try await body(port.withLock { $0 }!)
    }

    /// Polls `condition` until it holds. The long default only bounds a failure: in a full run's
    /// first seconds every suite starts at once on 2 cores, and a server took over 10 s to listen.
    static func poll(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try !condition() {
            guard ContinuousClock.now < deadline else { throw PollTimeout(what: what) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    struct PollTimeout: Error { let what: String }
}

/// A blocking TCP client on loopback, for connections that must stay open and idle.
private final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let result = LoopbackAddress.with(port: port) { connect(fd, $0, $1) }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, 0) == bytes.count else { throw POSIXError(.EIO) }
    }

    /// What has arrived (empty if nothing). Never blocks: the server's handlers run on the same
    /// cooperative threads as the test, and a blocking wait here would starve them.
    func receive(waitingMs: Int = 0) -> String {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(waitingMs)) > 0 else { return "" }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    }

    /// What arrives within `duration`, polling without blocking a thread.
    func receive(within duration: Duration) async -> String {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            let text = receive()
            if !text.isEmpty { return text }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return ""
    }

    /// Whether the server has closed the connection (EOF), without waiting.
    func closedByPeer() -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 0) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) == 0
    }

    func close() { _ = Glibc.close(fd) }
}
