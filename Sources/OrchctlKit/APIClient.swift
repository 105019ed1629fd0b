import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// An answer of the API: any HTTP status (a refusal is an answer; only no answer at all moves on
/// to the next master).
public struct Reply: Sendable {
    public var status: Int
    public var body: Data
    /// The base URL of the master that answered.
    public var master: String
    public var text: String { String(decoding: body, as: UTF8.self) }
    public var json: JSONValue? { JSONValue.parse(body) }

    /// The body as JSON when the status is 2xx, else the server's refusal as an error.
    public func checkedJSON() throws(OrchctlError) -> JSONValue {
        try checked()
        guard let json else { throw .refused(status: status, code: "", message: "\(master) answered HTTP \(status) with a body that is not JSON") }
        return json
    }

    /// Nothing when the status is 2xx, else the server's refusal as an error.
    public func checked() throws(OrchctlError) {
        guard (200..<300).contains(status) else { throw OrchctlError.fromResponse(status: status, body: text) }
    }
}

/// The REST API of the masters, with failover: each request goes to the master that answered
/// last (the first one at first), and when that one does not answer (refused connection, timeout,
/// TLS failure) to the next, round the list once. Only when none answers is the request lost
/// (`OrchctlError.unreachable`, exit 3).
public final class APIClient: Sendable {
    public let settings: ConnectionSettings
    let http: HTTPClient
    /// Index of the master that answered last.
    private let current = Mutex(0)
    public let requestTimeout: TimeAmount

    public init(settings: ConnectionSettings, requestTimeout: TimeAmount = .seconds(20)) throws(OrchctlError) {
        self.settings = settings
        self.requestTimeout = requestTimeout
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = try Self.tlsConfiguration(settings)
        // Connect fast to fail over fast; reads wait longer (events carry a keepalive every 15 s).
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(3), read: .seconds(60))
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The CA to trust (else the system's) and the client certificate the masters may require.
    static func tlsConfiguration(_ s: ConnectionSettings) throws(OrchctlError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        do {
            if let ca = s.caCertificate {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            }
        } catch {
            throw .usage("--cacert \(s.caCertificate!): not a readable PEM certificate file (\(error))")
        }
        if let cert = s.certificate, let key = s.key {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            } catch {
                throw .usage("--cert \(cert): not a readable PEM certificate file (\(error))")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw .usage("--key \(key): not a readable PEM private key file (\(error))")
            }
        }
        return tls
    }

    /// Stops the connection pool (before the process exits normally).
    public func shutdown() async {
        try? await http.shutdown()
    }

    func makeRequest(_ method: HTTPMethod, base: String, path: String, body: Data?, headers: [(String, String)]) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "User-Agent", value: "orchctl")
        request.headers.add(name: "Accept", value: "application/json")
        if let token = settings.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        return request
    }

    /// Sends the request to the masters in turn until one answers; the answer whatever its status.
    /// A request that may have reached a master which then did not answer is sent again to the
    /// next: every write orchctl makes is safe to repeat (node actions and cancelling are
    /// idempotent, task submissions carry an `Idempotency-Key`).
    public func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = [],
                     limit: Int = 64 << 20) async throws(OrchctlError) -> Reply {
        try await withFailover { (base) async throws -> Reply in
            let request = self.makeRequest(method, base: base, path: path, body: body, headers: headers)
            let response = try await self.http.execute(request, timeout: self.requestTimeout)
            let bytes = try await response.body.collect(upTo: limit)
            return Reply(status: Int(response.status.code), body: Data(buffer: bytes), master: base)
        }
    }

    /// GET and decode a 2xx JSON answer; a refusal as `OrchctlError.refused`.
    public func getJSON(_ path: String) async throws(OrchctlError) -> JSONValue {
        try await send(.GET, path).checkedJSON()
    }

    /// Runs `attempt` against each master in turn, from the one that answered last, until one
    /// does not throw; remembers it. `start` overrides where to begin (the event stream moves on
    /// from a master that ended its stream).
    public func withFailover<T: Sendable>(start: Int? = nil, _ attempt: @Sendable (String) async throws -> T) async throws(OrchctlError) -> T {
        let masters = settings.masters
        let first = start ?? current.withLock { $0 }
        var failures: [String] = []
        for step in 0..<masters.count {
            let index = (first + step) % masters.count
            do {
                let result = try await attempt(masters[index])
                current.withLock { $0 = index }
                return result
            } catch let error as OrchctlError {
                throw error
            } catch {
                if error is CancellationError { throw .unreachable("cancelled") }
                failures.append("\(masters[index]): \(Self.describe(error))")
            }
        }
        throw .unreachable("no master answered (" + failures.joined(separator: "; ") + ")")
    }

    /// The index of the master that answered last.
    public var currentIndex: Int { current.withLock { $0 } }

    /// Opens a streaming GET on one master (no overall deadline; the read timeout still applies):
    /// the response for the caller to read, or an error when that master does not answer.
    public func openStream(base: String, path: String, headers: [(String, String)]) async throws -> HTTPClientResponse {
        var request = makeRequest(.GET, base: base, path: path, body: nil, headers: headers)
        request.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        return try await http.execute(request, deadline: .distantFuture)
    }

    /// A short description of a transport error, for the one-line message.
    static func describe(_ error: any Error) -> String {
        let text: String
        if let e = error as? HTTPClientError {
            text = e == .connectTimeout ? "connect timed out" : e == .deadlineExceeded ? "timed out" : "\(e)"
        } else if let e = error as? IOError {
            text = e.description
        } else {
            text = "\(error)"
        }
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return line.count > 160 ? String(line.prefix(160)) + "…" : line
    }
}
