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
