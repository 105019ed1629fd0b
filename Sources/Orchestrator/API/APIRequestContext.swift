import Hummingbird
import Logging
import Store

/// The request context of the orchestrator's router. It keeps nothing but Hummingbird's core
/// storage, so besides the server's initializer it has one from a bare logger (tests drive the
/// responder directly with it, e.g. to read an event stream piece by piece).
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    /// A context outside a server (tests, or a caller embedding the responder).
    public init(logger: Logger) {
        coreContext = .init(source: LoggerSource(logger: logger))
    }

    struct LoggerSource: RequestContextSource {
        var logger: Logger
    }

    /// Bodies are read by `readBody(_:limit:)` with the API's own limit and error body.
    public var maxUploadSize: Int { TaskLimits().maxBodyBytes }
}

/// Parsing of the parts of a request the handlers share; every failure is a 400 naming the parameter.
extension Request {
    /// The whole body, refusing more than `limit` bytes with 413 `body_too_large` (announced by
    /// Content-Length or found while reading), never Hummingbird's bare 413.
    func readBody(limit: Int) async throws -> [UInt8] {
        if let declared = headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw APIError.bodyTooLarge(declared, limit: limit)
        }
        var bytes: [UInt8] = []
        for try await chunk in body {
            if bytes.count + chunk.readableBytes > limit {
                throw APIError.bodyTooLarge(bytes.count + chunk.readableBytes, limit: limit)
            }
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        return bytes
    }

    func query(_ name: String) -> String? {
        uri.queryParameters.get(name)
    }

    /// `?consistent=true` asks for a linearizable read; the default is the local (serializable) one.
    /// Only `true` and `false`, as the document's boolean says (a bare `?consistent` or `1` would be
    /// a value no client generated from the document sends, and one a fuzzer rightly flags).
    func readConsistency() throws(APIError) -> ReadConsistency {
        switch query("consistent") {
        case nil, "false": return .serializable
        case "true": return .linearizable
        case let other?: throw .invalid("consistent", "must be true or false, got \"\(other)\"")
        }
    }

    /// A non-negative integer query parameter, or nil when absent.
    func int64Query(_ name: String, range: ClosedRange<Int64> = 0...Int64.max) throws(APIError) -> Int64? {
        guard let text = query(name) else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw .invalid(name, "must be an integer between \(range.lowerBound) and \(range.upperBound), got \"\(text)\"")
        }
        return value
    }
}

extension APIError {
    static func bodyTooLarge(_ size: Int, limit: Int) -> APIError {
        APIError(status: 413, code: "body_too_large", message: "request body is at least \(size) bytes; the limit is \(limit)")
    }
}

/// A path parameter that names a record: it must be present and plausible (no control characters,
/// bounded), otherwise no record can have it and the answer is 404.
func pathID(_ context: APIRequestContext, kind: String) throws(APIError) -> String {
    guard let id = context.parameters.get("id"), !id.isEmpty, id.utf8.count <= 256,
          id.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else {
        throw .notFound("no such \(kind)")
    }
    return id
}
