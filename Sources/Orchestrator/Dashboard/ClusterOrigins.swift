import Hummingbird

/// Which web origins may call this master's API from a browser: the other masters of the cluster.
///
/// The dashboard a master serves at `/ui` keeps working when that master dies by calling another
/// member's API directly (the page stays loaded; only its API base changes). That call is
/// cross-origin, so the member answers it with CORS headers, but only for an `Origin` that is a
/// member's own advertised API address: such a page is this same dashboard, served by a peer.
/// Any other site's page still gets no CORS headers (its browser hides the answer) and, on a
/// loopback API without a token, the `CrossSiteGuard`'s 403.
public struct ClusterOrigins: Sendable, Equatable {
    /// The members' API addresses, `host:port`, lower-cased (`ClusterMember.apiAddress`).
    public var addresses: Set<String>
    /// `http`, or `https` when the masters serve TLS (they all do, or none).
    public var scheme: String

    public init(memberAddresses: [String], scheme: String) {
        addresses = Set(memberAddresses.filter { !$0.isEmpty }.map { $0.lowercased() })
        self.scheme = scheme.lowercased()
    }

    /// Whether `origin` (`scheme://host:port`) is a member's API. A loopback name matches a member
    /// advertised under another loopback name with the same port (a page opened at
    /// `localhost:8080` whose peers advertise `127.0.0.1:8081`).
    public func allows(_ origin: String) -> Bool {
        let lowered = origin.lowercased()
        let prefix = scheme + "://"
        guard lowered.hasPrefix(prefix), let (host, port) = Self.split(String(lowered.dropFirst(prefix.count))) else { return false }
        if addresses.contains("\(host):\(port)") { return true }
        guard Self.isLoopbackName(host) else { return false }
        return addresses.contains { address in
            guard let (h, p) = Self.split(address) else { return false }
            return p == port && Self.isLoopbackName(h)
        }
    }

    /// The origins a page of this dashboard may connect to (its CSP's `connect-src`).
    public var connectSources: [String] {
        addresses.sorted().map { "\(scheme)://\($0)" }
    }

    /// `host` and `port` of `host:port` or `[v6]:port`; nil without an explicit numeric port (a
    /// member's address always has one).
    static func split(_ authority: String) -> (String, Int)? {
        guard let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]"),
              let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(authority[..<colon])
        guard !host.isEmpty, !host.contains("/"), !host.contains("@") else { return nil }
        return (host, port)
    }

    /// `localhost`, `[::1]` or an IPv4 literal in 127.0.0.0/8 (all four parts numbers: a name
    /// such as `127.0.0.1.evil.example` is someone's domain).
    static func isLoopbackName(_ host: String) -> Bool {
        if host == "localhost" || host == "[::1]" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

extension HTTPFields.Element.Name {
    static let accessControlAllowOrigin = Self("Access-Control-Allow-Origin")!
    static let accessControlAllowMethods = Self("Access-Control-Allow-Methods")!
    static let accessControlAllowHeaders = Self("Access-Control-Allow-Headers")!
    static let accessControlExposeHeaders = Self("Access-Control-Expose-Headers")!
    static let accessControlMaxAge = Self("Access-Control-Max-Age")!
    static let accessControlRequestMethod = Self("Access-Control-Request-Method")!
    static let vary = Self("Vary")!
}

extension ClusterOrigins {
    /// The CORS headers on an answer to `origin` (a member's page).
    static func responseHeaders(origin: String) -> HTTPFields {
        [.accessControlAllowOrigin: origin, .vary: "Origin",
         .accessControlExposeHeaders: "X-Orchestrator-Index, X-Orchestrator-Leader"]
    }

    /// The answer to a CORS preflight from a member's page: the methods and headers the dashboard
    /// sends. No credentials (cookies) are involved: the token travels in `Authorization`.
    static func preflight(origin: String) -> Response {
        var headers = responseHeaders(origin: origin)
        headers[.accessControlAllowMethods] = "GET, POST, DELETE"
        headers[.accessControlAllowHeaders] = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
        headers[.accessControlMaxAge] = "600"
        return Response(status: .noContent, headers: headers)
    }
}

extension APIConfiguration {
    /// The origins of the cluster's members, as this API's scheme names them.
    func clusterOrigins(_ members: [ClusterMember]) -> ClusterOrigins {
        ClusterOrigins(memberAddresses: members.map(\.apiAddress), scheme: tls ? "https" : "http")
    }
}
