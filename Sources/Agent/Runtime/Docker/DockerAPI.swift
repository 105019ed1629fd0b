import AsyncHTTPClient
import Foundation
import NIOCore

/// The few Docker Engine API calls the runtime needs, over the daemon's unix socket, with Docker's
/// answers turned into `RuntimeError`s that carry Docker's own message.
struct DockerAPI: Sendable {
    let client: HTTPClient
    let socketPath: String
    let apiVersion: String

    /// A response whose body was read completely.
    struct Response: Sendable {
        var status: Int
        var body: ByteBuffer

        func decode<T: Decodable>(_ type: T.Type, operation: String) throws -> T {
            do {
                return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
            } catch {
                throw RuntimeError.docker(operation: operation, status: status,
                                          message: "unexpected answer: \(error) in \(String(buffer: body).prefix(300))")
            }
        }

        /// Docker's `{"message": ...}`, or the raw body when it is something else.
        var message: String {
            let data = Data(body.readableBytesView)
            if let error = try? JSONDecoder().decode(DockerErrorBody.self, from: data) { return error.message }
            let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? "(empty answer)" : String(text.prefix(500))
        }
    }

    /// The HTTP methods the Engine API calls use.
    enum Verb: Sendable { case get, post, delete }

    /// Builds the request for `path` (under the API version) and `query` (encoded here).
    func request(_ verb: Verb, _ path: String, query: [(String, String)] = [],
                 json body: (any Encodable)? = nil) throws -> HTTPClientRequest {
        var uri = "/\(apiVersion)\(path)"
        if !query.isEmpty {
            uri += "?" + query.map { "\(Self.percentEncode($0.0))=\(Self.percentEncode($0.1))" }.joined(separator: "&")
        }
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw RuntimeError.dockerUnreachable(socketPath: socketPath, message: "cannot form a URL for \(uri)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        switch verb {
        case .get: request.method = .GET
        case .post: request.method = .POST
        case .delete: request.method = .DELETE
        }
        // AsyncHTTPClient sends no Host header over a unix socket, and dockerd answers 400 without one.
        request.headers.add(name: "Host", value: "docker")
        if let body {
            let data = try JSONEncoder().encode(body)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        return request
    }

    /// Sends `request` and reads its whole body (up to `maxBody` bytes) before `deadline`.
    func send(_ request: HTTPClientRequest, operation: String, deadline: NIODeadline,
              timeout: Duration, maxBody: Int = 16 << 20) async throws -> Response {
        do {
            let response = try await client.execute(request, deadline: deadline)
            let body = try await response.body.collect(upTo: maxBody)
            // A cancelled caller may see the body end early rather than an error.
            try Task.checkCancellation()
            return Response(status: Int(response.status.code), body: body)
        } catch {
            throw mapTransportError(error, operation: operation, timeout: timeout)
        }
    }

    /// Sends `request` and reads its whole body, all within `timeout`.
    func send(_ request: HTTPClientRequest, operation: String, timeout: Duration) async throws -> Response {
        try await send(request, operation: operation, deadline: .now() + timeout.timeAmount, timeout: timeout)
    }

    /// Sends and hands the streaming response to `consume`; for logs and pulls.
    func stream<T: Sendable>(_ request: HTTPClientRequest, operation: String, deadline: NIODeadline,
                             timeout: Duration,
                             consume: (Int, HTTPClientResponse.Body) async throws -> T) async throws -> T {
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, deadline: deadline)
        } catch {
            throw mapTransportError(error, operation: operation, timeout: timeout)
        }
        do {
            return try await consume(Int(response.status.code), response.body)
        } catch let error where error is HTTPClientError || error is IOError || error is ChannelError {
            throw mapTransportError(error, operation: operation, timeout: timeout)
        }
    }

    /// A failure below HTTP: the socket is missing or refuses, the deadline passed, or the caller
    /// was cancelled (which stays a `CancellationError`).
    func mapTransportError(_ error: any Error, operation: String, timeout: Duration) -> any Error {
        if error is RuntimeError || error is CancellationError { return error }
        if let http = error as? HTTPClientError {
            if http == .deadlineExceeded || http == .readTimeout { return RuntimeError.timedOut(operation: operation, after: timeout) }
            if http == .cancelled { return CancellationError() }
        }
        if Task.isCancelled { return CancellationError() }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: socketPath, isDirectory: &isDirectory) {
            return RuntimeError.dockerUnreachable(socketPath: socketPath, message: "no such socket")
        }
        return RuntimeError.dockerUnreachable(socketPath: socketPath, message: "\(operation): \(error)")
    }

    /// Percent-encodes a query component: everything but RFC 3986's unreserved characters.
    static func percentEncode(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// A path segment holding an image reference: its `/` separators stay (Docker's router takes
    /// `/images/{name:.*}/json`), everything else unusual is encoded.
    static func encodeImagePath(_ image: String) -> String {
        image.split(separator: "/", omittingEmptySubsequences: false).map { percentEncode(String($0)) }
            .joined(separator: "/")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

// MARK: - Wire types (Docker Engine API v1.41)

struct DockerErrorBody: Decodable {
    var message: String
}

struct DockerCreateContainer: Encodable {
    var image: String
    var cmd: [String]?
    var env: [String]
    var labels: [String: String]
    var hostConfig: HostConfig

    struct HostConfig: Encodable {
        var nanoCpus: Int64?
        var memory: Int64?
        var memorySwap: Int64?
        var securityOpt: [String]?
        var pidsLimit: Int64?
        var logConfig: LogConfig?
        var capDrop: [String]?

        struct LogConfig: Encodable {
            var type: String
            var config: [String: String]
            enum CodingKeys: String, CodingKey { case type = "Type", config = "Config" }
        }

        enum CodingKeys: String, CodingKey {
            case nanoCpus = "NanoCpus", memory = "Memory", memorySwap = "MemorySwap", securityOpt = "SecurityOpt",
                 pidsLimit = "PidsLimit", logConfig = "LogConfig", capDrop = "CapDrop"
        }
    }

    enum CodingKeys: String, CodingKey {
        case image = "Image", cmd = "Cmd", env = "Env", labels = "Labels", hostConfig = "HostConfig"
    }
}

struct DockerCreated: Decodable {
    var id: String
    enum CodingKeys: String, CodingKey { case id = "Id" }
}

struct DockerWaitResult: Decodable {
    var statusCode: Int64
    enum CodingKeys: String, CodingKey { case statusCode = "StatusCode" }
}

/// `GET /containers/{id}/json`, the parts the runtime reads.
struct DockerContainerInspect: Decodable {
    var id: String
    /// With a leading `/`.
    var name: String
    var state: State
    var config: Config
    var hostConfig: HostConfig

    struct State: Decodable {
        var status: String
        var running: Bool
        var oomKilled: Bool
        var exitCode: Int64
        var error: String?

        enum CodingKeys: String, CodingKey {
            case status = "Status", running = "Running", oomKilled = "OOMKilled", exitCode = "ExitCode", error = "Error"
        }
    }

    struct Config: Decodable {
        var labels: [String: String]?
        enum CodingKeys: String, CodingKey { case labels = "Labels" }
    }

    struct HostConfig: Decodable {
        var nanoCpus: Int64?
        var memory: Int64?
        var memorySwap: Int64?
        // What confines the container (TaskContainerPolicy), read back by the tests.
        var securityOpt: [String]?
        var pidsLimit: Int64?
        var logConfig: LogConfig?
        var capDrop: [String]?
        var capAdd: [String]?
        var privileged: Bool?
        var binds: [String]?
        var mounts: [Mount]?
        var networkMode: String?
        var pidMode: String?
        var ipcMode: String?
        var devices: [Device]?

        struct LogConfig: Decodable {
            var type: String
            var config: [String: String]?
            enum CodingKeys: String, CodingKey { case type = "Type", config = "Config" }
        }
        struct Mount: Decodable {
            var source: String?
            enum CodingKeys: String, CodingKey { case source = "Source" }
        }
        struct Device: Decodable {
            var pathOnHost: String?
            enum CodingKeys: String, CodingKey { case pathOnHost = "PathOnHost" }
        }

        enum CodingKeys: String, CodingKey {
            case nanoCpus = "NanoCpus", memory = "Memory", memorySwap = "MemorySwap", securityOpt = "SecurityOpt",
                 pidsLimit = "PidsLimit", logConfig = "LogConfig", capDrop = "CapDrop", capAdd = "CapAdd",
                 privileged = "Privileged", binds = "Binds", mounts = "Mounts", networkMode = "NetworkMode",
                 pidMode = "PidMode", ipcMode = "IpcMode", devices = "Devices"
        }
    }

    enum CodingKeys: String, CodingKey {
        case id = "Id", name = "Name", state = "State", config = "Config", hostConfig = "HostConfig"
    }
}

/// One entry of `GET /containers/json`.
struct DockerContainerSummary: Decodable {
    var id: String
    var labels: [String: String]?
    var state: String

    enum CodingKeys: String, CodingKey { case id = "Id", labels = "Labels", state = "State" }
}

/// One line of `POST /images/create`'s progress stream; failures arrive here with status 200.
struct DockerPullProgress: Decodable {
    var error: String?
    var errorDetail: Detail?

    struct Detail: Decodable { var message: String? }
}
