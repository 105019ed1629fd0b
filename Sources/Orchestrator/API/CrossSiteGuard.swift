import Foundation
import Hummingbird

/// What keeps a web page in someone's browser from driving the API.
///
/// - Every state-changing request (POST, PUT, PATCH, DELETE) that carries a body, or says what
///   its body is, must say `Content-Type: application/json`: the types a cross-site form or a
///   "simple" `fetch` can send without a CORS preflight (`text/plain`, form encodings) answer 415.
/// - An API on loopback without a token (`master --dev`) trusts whoever can connect, and a
///   browser on this machine can connect. So it also refuses a `Host` that is not one of its
///   own loopback names (a DNS-rebinding page reaches 127.0.0.1 under its own name) and an
///   `Origin` that is not its own (a page of another site), with 403. curl and other clients
///   that send no `Origin` are unaffected.
public struct CrossSiteGuard: Sendable, Equatable {
    /// The API's own port, which a browser names in `Host` and `Origin`.
    public var port: Int
    /// Also accepted as this API's name besides `localhost`, `127.0.0.1` and `[::1]` (the host it
    /// binds, when that is another loopback address).
    public var boundHost: String
    /// `http`, or `https` when the API serves TLS: the scheme of its own `Origin`.
    public var scheme: String

    public init(port: Int, boundHost: String = "127.0.0.1", scheme: String = "http") {
        self.port = port
        self.boundHost = boundHost
        self.scheme = scheme
    }

    /// This API's own names, as `Host` carries them without the port.
    var ownNames: Set<String> {
        let bound = boundHost.contains(":") && !boundHost.hasPrefix("[") ? "[\(boundHost)]" : boundHost
        return ["localhost", "127.0.0.1", "[::1]", bound.lowercased()]
    }

    /// Whether `authority` (`name` or `name:port`) is this API: one of its names, with its port
    /// or none (a browser omits port 80, and no other site can make it send these names). Port 0
    /// (a test's free port) accepts any port.
    func isOwn(_ authority: String) -> Bool {
        var name = Substring(authority.lowercased())
        var givenPort: Int?
        if let colon = name.lastIndex(of: ":"), !name[colon...].contains("]") {
            guard let p = Int(name[name.index(after: colon)...]) else { return false }
            givenPort = p
            name = name[..<colon]
        }
        guard ownNames.contains(String(name)) else { return false }
        return givenPort == nil || givenPort == port || port == 0
    }

    /// Nil when every `hosts` value and `origin` are this API's own, else the 403 to answer.
    /// `originIsPeer`: the origin is another master's API (`ClusterOrigins`), whose dashboard
    /// page calls this one when its own master is gone; it is accepted like this API's own.
    public func check(hosts: [String], origin: String?, originIsPeer: Bool = false) -> APIError? {
        for host in hosts where !isOwn(host) {
            return APIError(status: 403, code: "forbidden_host",
                            message: "Host \(host) is not this API's own (localhost:\(port), 127.0.0.1:\(port)); this API on loopback answers only its own names")
        }
        if let origin, !originIsPeer {
            let lowered = origin.lowercased()
            let prefix = scheme.lowercased() + "://"
            guard lowered.hasPrefix(prefix), isOwn(String(lowered.dropFirst(prefix.count))) else {
                return APIError(status: 403, code: "forbidden_origin",
                                message: "Origin \(origin) is not this API's own; requests from other sites' pages are refused (set --api-token to serve browsers elsewhere)")
            }
        }
        return nil
    }

    static let stateChanging: Set<HTTPRequest.Method> = [.post, .put, .patch, .delete]

    /// Nil when `method` changes nothing, or its body is JSON, or it has no body and no type;
    /// else the 415 to answer.
    public static func checkContentType(method: HTTPRequest.Method, contentType: String?, hasBody: Bool) -> APIError? {
        guard stateChanging.contains(method) else { return nil }
        guard let contentType else {
            return hasBody ? unsupported("no Content-Type") : nil
        }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return mediaType == "application/json" ? nil : unsupported("Content-Type \(contentType)")
    }

    static func unsupported(_ what: String) -> APIError {
        APIError(status: 415, code: "unsupported_media_type",
                 message: "\(what): send the body as JSON with 'Content-Type: application/json'")
    }
}
