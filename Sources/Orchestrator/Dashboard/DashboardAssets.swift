import Foundation
import Hummingbird

/// The web dashboard's files, built into the binary (no toolchain, nothing to install beside a
/// master): `/ui` is the page, `/ui/app.js` and `/ui/style.css` what it loads.
///
/// The files are fixed at start-up, so each gets a strong `ETag` once; browsers revalidate
/// (`Cache-Control: no-cache`) and get a 304 while the binary is the same, the new file at once
/// after an upgrade.
public struct DashboardAssets: Sendable {
    /// One file as served.
    public struct Asset: Sendable {
        public var contentType: String
        public var body: [UInt8]
        public var etag: String

        init(_ contentType: String, _ text: String) {
            self.contentType = contentType
            body = Array(text.utf8)
            etag = "\"\(DashboardAssets.fnv1a(body))\""
        }
    }

    /// Where the dashboard lives; everything under it is the dashboard's.
    public static let pathPrefix = "/ui"

    let files: [String: Asset]

    /// - Parameter tokenRequired: the API wants a bearer token. The page is told, so it asks for
    ///   the token before its first call instead of learning it from a 401 (which a browser logs
    ///   as an error). Whether a token is needed is no secret: any unauthenticated call shows it.
    public init(tokenRequired: Bool) {
        files = [
            "index.html": Asset("text/html; charset=utf-8", DashboardPage.html(tokenRequired: tokenRequired)),
            "app.js": Asset("text/javascript; charset=utf-8", DashboardScript.core + DashboardScript.views),
            "style.css": Asset("text/css; charset=utf-8", DashboardPage.css),
        ]
    }

    /// The file for a request path (`/ui`, `/ui/`, `/ui/index.html`, `/ui/app.js`...), or nil.
    public func asset(at path: String) -> Asset? {
        guard Self.isDashboardPath(path) else { return nil }
        let name = path.dropFirst(Self.pathPrefix.count).drop { $0 == "/" }
        return files[name.isEmpty ? "index.html" : String(name)]
    }

    static func isDashboardPath(_ path: String) -> Bool {
        path == pathPrefix || path.hasPrefix(pathPrefix + "/")
    }

    /// FNV-1a, 64 bits, as hex: a content fingerprint for the ETag (no secret to protect, so no
    /// cryptographic hash is needed).
    static func fnv1a(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// The page's Content-Security-Policy: scripts and styles only from this master (no inline
    /// script or style), API calls to this master and the other members (`ClusterOrigins`), no
    /// framing, no forms posted anywhere, no plugins.
    static func contentSecurityPolicy(peers: ClusterOrigins) -> String {
        let connect = (["'self'"] + peers.connectSources).joined(separator: " ")
        return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src \(connect); "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }
}

extension OrchestratorAPI {
    /// `GET /ui...`: a dashboard file with its type, ETag, cache and security headers; 304 when
    /// `If-None-Match` names the current ETag; 404 (the API's error body) for unknown names.
    func dashboard(_ request: Request) async throws -> Response {
        guard let asset = dashboardAssets.asset(at: request.uri.path) else {
            throw APIError.notFound("no dashboard file \(request.uri.path); the dashboard is at \(DashboardAssets.pathPrefix)")
        }
        let members = await status.status().members
        var headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache",
            .contentSecurityPolicy: DashboardAssets.contentSecurityPolicy(peers: configuration.clusterOrigins(members)),
            .xContentTypeOptions: "nosniff", .referrerPolicy: "no-referrer", .xFrameOptions: "DENY",
        ]
        let wanted = request.headers[values: .ifNoneMatch].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if wanted.contains(asset.etag) || wanted.contains("*") {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: asset.body)))
    }
}

extension HTTPFields.Element.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
}
