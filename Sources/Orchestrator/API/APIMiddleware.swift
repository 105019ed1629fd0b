import Hummingbird
import Store

/// Wraps every route (and the not-found responder): bearer-token auth, `?min_revision=` waits,
/// errors as `{"error":{"code","message"}}` (404 and 405 for unknown routes included), the
/// `X-Orchestrator-Index` and `X-Orchestrator-Leader` headers, and the HTTP metrics.
struct APIMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let api: OrchestratorAPI

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let path = request.uri.path
        let route = Route.allCases.first { $0.method == request.method && $0.matches(path) }
        let dashboard = DashboardAssets.isDashboardPath(path)
        // Another master's dashboard page (see `ClusterOrigins`); nil for any other origin.
        let peerOrigin = await self.peerOrigin(request)
        var response: Response
        do {
            try refuseCrossSite(request, originIsPeer: peerOrigin != nil)
            if let peerOrigin, request.method == .options, request.headers[.accessControlRequestMethod] != nil {
                // A preflight carries no token by design; what it asks for is checked on the real request.
                response = ClusterOrigins.preflight(origin: peerOrigin)
                record(request, route: route, status: response.status.code, since: started)
                return response
            }
            // The dashboard's files hold no secret: the page asks for the token and sends it on its API calls.
            if !dashboard { try authorize(request, route: route) }
            try requireJSON(request)
            if route?.isLiveness != true, !dashboard, let wanted = try request.int64Query("min_revision") {
                try await waitForRevision(wanted)
            }
            response = try await next(request, context)
        } catch {
            response = await errorResponse(error, path: path, route: route, context: context)
        }
        if let peerOrigin { response.headers.append(contentsOf: ClusterOrigins.responseHeaders(origin: peerOrigin)) }
        if dashboard {
            record(request, route: route, status: response.status.code, since: started, label: DashboardAssets.pathPrefix)
            return response
        }
        if route?.isLiveness != true, response.headers[.orchestratorIndex] == nil, let revision = await appliedRevision() {
            response.headers[.orchestratorIndex] = String(revision)
        }
        if let leader = await api.status.leaderID() {
            response.headers[.orchestratorLeader] = leader
        }
        record(request, route: route, status: response.status.code, since: started)
        return response
    }

    /// The revision this master's store has applied: from memory when the store is in this
    /// process, else a serializable read bounded to a second (an external etcd may not answer).
    func appliedRevision() async -> Int64? {
        let store = api.repository.store
        if let local = store as? any LocalRevisionReading { return local.appliedRevision }
        return try? await withDeadline(min(api.configuration.requestTimeout, .seconds(1))) {
            try await store.range(RangeRequest(key: ClusterRepository.leaderKey, countOnly: true), consistency: .serializable).revision
        }
    }

    /// With a token configured, every route but the health probes needs `Authorization: Bearer`.
    /// Checked before routing, so unknown paths answer 401 too and reveal nothing.
    func authorize(_ request: Request, route: Route?) throws(APIError) {
        guard let token = api.configuration.apiToken, !token.isEmpty else { return }
        // The probes' paths are open whatever the method: another method there gets its 405.
        if let route, !route.needsAuth { return }
        if route == nil, Route.openPaths.contains(request.uri.path) { return }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              APIAuth.constantTimeEquals(Array(header.utf8.dropFirst(7)), Array(token.utf8)) else {
            throw APIError(status: 401, code: "unauthorized", message: "missing or wrong bearer token (Authorization: Bearer <token>)")
        }
    }

    /// On loopback without a token (`CrossSiteGuard`): only this API's own `Host` and `Origin`,
    /// or another master's `Origin`.
    func refuseCrossSite(_ request: Request, originIsPeer: Bool) throws(APIError) {
        guard let crossSite = api.configuration.crossSiteGuard else { return }
        // HTTP/1's Host arrives as the authority; check any Host field too.
        let hosts = [request.head.authority].compactMap { $0 } + request.headers[values: .hostField]
        if let refusal = crossSite.check(hosts: hosts, origin: request.headers[.origin], originIsPeer: originIsPeer) { throw refusal }
    }

    /// The request's `Origin` when it is a member's API address (`ClusterOrigins`). The status is
    /// asked only when an `Origin` is present: curl and other clients send none.
    func peerOrigin(_ request: Request) async -> String? {
        guard let origin = request.headers[.origin], !origin.isEmpty else { return nil }
        let members = await api.status.status().members
        return api.configuration.clusterOrigins(members).allows(origin) ? origin : nil
    }

    /// A state-changing request's body must be declared JSON: what a cross-site form or a
    /// preflight-free `fetch` sends is not.
    func requireJSON(_ request: Request) throws(APIError) {
        let length = request.headers[.contentLength].flatMap { Int($0) } ?? 0
        let hasBody = length > 0 || request.headers[.transferEncoding] != nil
        if let refusal = CrossSiteGuard.checkContentType(method: request.method, contentType: request.headers[.contentType], hasBody: hasBody) {
            throw refusal
        }
    }

    /// Read-your-writes: hold the request until this master's store has applied `revision`.
    func waitForRevision(_ revision: Int64) async throws {
        try await api.reachRevision(revision, what: "min_revision")
    }

    func errorResponse(_ error: any Error, path: String, route: Route?, context: Context) async -> Response {
        if let http = error as? HTTPError, http.status == .notFound, context.endpointPath == "NotFound" {
            // Hummingbird's router found no handler for this method and path.
            let methods = Route.methods(at: path)
            if !methods.isEmpty {
                let allow = methods.map(\.rawValue).joined(separator: ", ")
                return APIError(status: 405, code: "method_not_allowed", message: "\(path) accepts \(allow)")
                    .response(headers: [.allow: allow])
            }
            return APIError(status: 404, code: "route_not_found", message: "no route \(path); see /api/v1/openapi.json").response()
        }
        if let http = error as? HTTPError {
            return APIError(status: Int(http.status.code), code: "http_error", message: http.body ?? http.status.reasonPhrase).response()
        }
        if error is DeadlineExceeded {
            let limit = api.configuration.requestTimeout
            // A POST of a task is safe to retry only with the key that names it.
            let retry = route == .createTask
                ? "retry with the same Idempotency-Key header, so a task the first attempt created is returned instead of a second one"
                : "retry"
            if await api.status.leaderID() == nil {
                return APIError.unavailable("no_leader", "no leader was elected within \(limit); a write may or may not have been applied; \(retry)")
                    .response()
            }
            return APIError.unavailable("store_timeout", "the cluster store did not answer within \(limit); a write may or may not have been applied; \(retry)")
                .response()
        }
        let apiError = APIError.from(error)
        return apiError.response(headers: apiError.status == 401 ? [.wwwAuthenticate: "Bearer"] : [:])
    }

    func record(_ request: Request, route: Route?, status: Int, since started: ContinuousClock.Instant, label fixed: String? = nil) {
        // The route pattern, not the path: ids would make one time series per task.
        let label = fixed ?? route?.path ?? "unmatched"
        let elapsed = (ContinuousClock.now - started).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        api.metrics.increment("orchestrator_http_requests_total",
                              labels: ["route": label, "method": request.method.rawValue, "status": String(status)],
                              help: "HTTP requests answered, by route pattern, method and status.")
        api.metrics.observe("orchestrator_http_request_duration_seconds", seconds,
                            labels: ["route": label, "method": request.method.rawValue],
                            help: "Time to the response head (event streams: to the stream's start), by route pattern and method.")
    }
}

extension OrchestratorAPI {
    /// Holds the request until this master's store has applied `revision`, within
    /// `minRevisionTimeout`, else 504 `revision_timeout`. A revision beyond the cluster's current one
    /// (what a linearizable read of the store reports: the leader's) is refused at once with 400
    /// `future_revision`, as etcd refuses a future revision: no wait would bring it.
    func reachRevision(_ revision: Int64, what: String) async throws {
        let status = self.status
        let store = repository.store
        let probe = RangeRequest(key: ClusterRepository.leaderKey, countOnly: true)
        let bound = configuration.minRevisionTimeout
        let started = ContinuousClock.now
        do {
            // Applied here already (or about to be): no round trip to the leader.
            if (try? await withDeadline(.milliseconds(50), { try await status.waitForRevision(revision) })) != nil { return }
            // Whether the revision exists at all is asked under the request timeout, not the wait's
            // bound: on a slow machine the answer may take longer than the bound, and it decides
            // between 400 at once and a wait.
            let current = try await withDeadline(configuration.requestTimeout) {
                try await store.range(probe, consistency: .linearizable).revision
            }
            guard revision <= current else {
                throw APIError(status: 400, code: "future_revision",
                               message: "\(what) \(revision) is beyond the cluster's current revision \(current)")
            }
            let remaining = bound - started.duration(to: .now)
            try await withDeadline(max(remaining, .milliseconds(10))) { try await status.waitForRevision(revision) }
        } catch is DeadlineExceeded {
            throw APIError(status: 504, code: "revision_timeout",
                           message: "this master did not reach revision \(revision) within \(bound); retry, or ask another master")
        }
    }
}

/// Token checks and the start-up warning about an open API.
public enum APIAuth {
    /// Compares without an early exit, so the time taken does not tell how much of a guess was right.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            diff |= x ^ y
        }
        return diff == 0 && a.count == b.count
    }

    /// Whether the master should warn at start: no token, and listening beyond the loopback
    /// interface (`0.0.0.0`, `::`, a host name or a LAN address).
    public static func shouldWarnOpenAPI(token: String?, bindHost: String) -> Bool {
        if let token, !token.isEmpty { return false }
        return !isLoopback(bindHost)
    }

    static func isLoopback(_ host: String) -> Bool {
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }
}

extension HTTPFields.Element.Name {
    /// `Host` as a field: HTTPTypes marks `.host` unavailable in favour of the authority, but a
    /// request may carry the field too.
    static let hostField = Self("Host")!
}
