/// An error the REST API returns as `{"error":{"code","message"}}` with `status`.
public struct APIError: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: Int
    /// A stable machine-readable code: `invalid_json`, `invalid_field`, `missing_field`,
    /// `body_too_large`, `not_found`, `unauthorized`, ...
    public var code: String
    /// One line a person can act on, naming the field at fault.
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status) \(code): \(message)" }

    public static func invalid(_ field: String, _ why: String) -> APIError {
        APIError(status: 400, code: "invalid_field", message: "\(field): \(why)")
    }

    public static func missing(_ field: String) -> APIError {
        APIError(status: 400, code: "missing_field", message: "\(field): required")
    }
}

extension APIError {
    public static func notFound(_ what: String) -> APIError {
        APIError(status: 404, code: "not_found", message: what)
    }

    public static func conflict(_ code: String = "conflict", _ message: String) -> APIError {
        APIError(status: 409, code: code, message: message)
    }

    public static func unavailable(_ code: String = "unavailable", _ message: String) -> APIError {
        APIError(status: 503, code: code, message: message)
    }

    /// `{"error":{"code":"…","message":"…"}}`, the body of every error answer.
    public var jsonBody: [UInt8] {
        APIJSON.encode(ErrorBody(error: .init(code: code, message: message)))
    }

    struct ErrorBody: Codable, Sendable {
        struct Detail: Codable, Sendable {
            var code: String
            var message: String
        }
        var error: Detail
    }
}

/// An error that knows which API error it is, so layers below the API (the master's write forwarding,
/// a log source) can choose their status and code: e.g. the master's "no leader" error conforms and
/// answers 503 `no_leader` instead of the generic 503 `store_unavailable`.
public protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}
