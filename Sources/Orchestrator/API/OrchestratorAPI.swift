import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import Store

/// The REST API of a master, as a library: built from injected collaborators, so the master mounts
/// it next to its Raft and gRPC services and tests drive it against a `MemoryStore`.
///
/// ```swift
/// let api = OrchestratorAPI(repository: repo, status: master, logs: workerLogs, configuration: config)
/// let app = api.makeApplication(address: .hostname("0.0.0.0", port: 8080))
/// // run `app` in the master's ServiceGroup; before stopping it call `api.closeEventStreams()`
/// ```
public struct OrchestratorAPI: Sendable {
    public let repository: ClusterRepository
    public let status: any ClusterStatusSource
    public let logs: any TaskLogSource
    /// The masters' membership; nil: it cannot change here (the endpoints answer 400).
    public let membership: (any MembershipSource)?
    public let configuration: APIConfiguration
    /// HTTP metrics land here; the master may add its own (see `MetricsRegistry`).
    public let metrics: MetricsRegistry
    let parser: TaskSpecParser
    let streams: EventStreamRegistry
    /// Open REST connections against `configuration.maxConnections`.
    public let connections: ConnectionLimit
    /// The OpenAPI document for this configuration, encoded once.
    let openAPI: [UInt8]
    /// The web dashboard served at `/ui` (not an API route, so not in `Route` nor the document).
    let dashboardAssets: DashboardAssets
    /// The master's copy of the records: `/metrics` counts from it while it is synced, rather
    /// than reading every task (nil: always from the store).
    public let cache: ClusterCache?

    public init(repository: ClusterRepository, status: any ClusterStatusSource, logs: any TaskLogSource,
                configuration: APIConfiguration = APIConfiguration(), metrics: MetricsRegistry = MetricsRegistry(),
                membership: (any MembershipSource)? = nil, cache: ClusterCache? = nil) {
        self.repository = repository
        self.cache = cache
        self.membership = membership
        self.status = status
        self.logs = logs
        self.configuration = configuration
        self.metrics = metrics
        self.parser = TaskSpecParser(limits: configuration.limits)
        self.streams = EventStreamRegistry()
        self.connections = ConnectionLimit(limit: configuration.maxConnections)
        self.openAPI = OpenAPIDocument(configuration: configuration).json
        self.dashboardAssets = DashboardAssets(tokenRequired: !(configuration.apiToken ?? "").isEmpty)
    }

    /// The router with every route of `Route` behind the API middleware (auth, errors, headers, metrics).
    public func buildRouter() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        // Added before the routes: Hummingbird applies a middleware to the routes added after it,
        // and to the not-found responder, so unknown paths get our error body too.
        router.add(middleware: APIMiddleware(api: self))
        for route in Route.allCases {
            router.on(RouterPath(route.path), method: route.method) { request, context in
                try await self.respond(route, request, context)
            }
        }
        for path in [DashboardAssets.pathPrefix, DashboardAssets.pathPrefix + "/{file}"] {
            router.get(RouterPath(path)) { request, _ in try await self.dashboard(request) }
        }
        return router
    }

    /// An HTTP/1.1 server application serving `buildRouter()` on `address`, over TLS when `tls`
    /// is given (HTTPS with the cluster's material; a client certificate is optional there, as
    /// REST callers authenticate with the API token). Connections idle for
    /// `configuration.idleTimeout` are closed, and at most `configuration.maxConnections` are served
    /// at once.
    /// `onServerRunning` gets the listening channel (its local address holds the port bound for
    /// port 0).
    public func makeApplication(address: BindAddress, tls: TLSConfiguration? = nil, logger: Logger? = nil,
                                onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let idle = configuration.idleTimeout.components
        let idleNanoseconds = idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000
        return Application(router: buildRouter(),
                    server: try tls.map { try .tls(.http1(configuration: .init(idleTimeout: .nanoseconds(idleNanoseconds))),
                                                   tlsConfiguration: $0) }
                        ?? .http1(configuration: .init(idleTimeout: .nanoseconds(idleNanoseconds))),
                    configuration: ApplicationConfiguration(address: address, serverName: "orchestrator",
                                                            availableConnectionsDelegate: connections.delegate),
                    onServerRunning: onServerRunning,
                    logger: logger ?? Logger(label: "orchestrator.api"))
    }

    /// Ends every open event stream (with a final `event: shutdown`), so the HTTP server's graceful
    /// shutdown, which waits for open responses, is not held up by clients that never disconnect.
    public func closeEventStreams() {
        streams.closeAll()
    }

    /// Number of event streams currently open (tests, diagnostics).
    public var openEventStreams: Int { streams.count }

    func respond(_ route: Route, _ request: Request, _ context: APIRequestContext) async throws -> Response {
        switch route {
        case .createTask: try await createTask(request)
        case .listTasks: try await listTasks(request)
        case .getTask: try await getTask(request, context)
        case .cancelTask: try await cancelTask(request, context)
        case .taskLogs: try await taskLogs(request, context)
        case .listNodes: try await listNodes(request)
        case .getNode: try await getNode(request, context)
        case .deleteNode: try await deleteNode(context)
        case .drainNode: try await changeNode(request, context) { $0.drain() }
        case .cordonNode: try await changeNode(request, context) { $0.cordon() }
        case .uncordonNode: try await changeNode(request, context) { $0.uncordon() }
        case .events: try await events(request)
        case .cluster: try await cluster(request)
        case .listMembers: try await listMembers()
        case .addMember: try await addMember(request)
        case .promoteMember: try await promoteMember(context)
        case .removeMember: try await removeMember(context)
        case .snapshot: try await snapshot()
        case .health, .healthz: jsonResponse(HealthView(status: "ok"), revision: nil)
        case .readyz: try await readyz()
        case .metrics: try await metricsText()
        case .openAPI: Response(status: .ok, headers: [.contentType: "application/json"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: openAPI)))
        }
    }

    /// Runs the store work of a request within `requestTimeout` (see `withDeadline`).
    func bounded<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withDeadline(configuration.requestTimeout, operation)
    }
}

// MARK: - Responses

// `HTTPField` is reached through `HTTPFields` (which Hummingbird re-exports), so the target needs
// no dependency on swift-http-types of its own.
extension HTTPFields.Element.Name {
    /// The store revision the response reflects.
    public static let orchestratorIndex = Self("X-Orchestrator-Index")!
    /// The current leader's id, when one is known.
    public static let orchestratorLeader = Self("X-Orchestrator-Leader")!
    /// Where a reconnecting event-stream client resumes.
    public static let lastEventID = Self("Last-Event-ID")!
    /// Asks proxies (nginx) not to buffer an event stream.
    static let accelBuffering = Self("X-Accel-Buffering")!
    /// Names a task submission so that a retry returns the first attempt's task (as Stripe's API).
    public static let idempotencyKey = Self("Idempotency-Key")!
    /// Set on a response that replays an earlier request with the same `Idempotency-Key`.
    public static let idempotentReplayed = Self("Idempotent-Replayed")!
}

/// A JSON response; `revision` becomes `X-Orchestrator-Index`.
func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, revision: Int64?,
                                headers extra: HTTPFields = [:]) -> Response {
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    if let revision { headers[.orchestratorIndex] = String(revision) }
    headers.append(contentsOf: extra)
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: APIJSON.encode(value))))
}

extension APIError {
    /// The response for this error (JSON body, and `Allow`/`WWW-Authenticate` where they belong).
    func response(headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        headers.append(contentsOf: extra)
        return Response(status: HTTPResponse.Status(code: status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: jsonBody)))
    }

    /// What an error from any layer means for the client. Unknown errors come from the store's
    /// transport or consensus (a lost etcd connection, a write that found no leader): 503.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as any APIErrorConvertible: return e.apiError
        case let e as RepositoryError:
            switch e {
            case .notFound(let id): return .notFound("no such record \"\(id)\"")
            case .alreadyExists(let id): return .conflict("already_exists", "\"\(id)\" already exists")
            case .conflict(let what): return .conflict("conflict", "\(what) kept changing under concurrent writers; retry")
            case .corrupt(let what): return APIError(status: 500, code: "corrupt_record", message: what)
            case .invalidTransition(let what): return APIError(status: 500, code: "invalid_transition", message: what)
            case .permissionDenied(let what): return APIError(status: 403, code: "permission_denied", message: what)
            case .idempotencyKeyReused(let key):
                return APIError(status: 422, code: "idempotency_key_reused",
                                message: "Idempotency-Key \"\(key)\" was used for a different request body; use a new key for a new task")
            }
        case let e as StoreError:
            switch e {
            case .compacted(let rev):
                return APIError(status: 410, code: "compacted", message: "the revision asked for has been compacted (oldest available: \(rev))")
            case .futureRevision(let requested, let current):
                return .unavailable("not_caught_up", "this master has applied revision \(current), not yet \(requested); retry")
            case .requestTooLarge(let size, let limit):
                return APIError(status: 413, code: "body_too_large", message: "the record would be \(size) bytes; the store's limit is \(limit)")
            case .noSpace:
                return APIError(status: 507, code: "store_full",
                                message: "the cluster store is over its quota (NOSPACE alarm): writes that grow it are refused; delete ended tasks or lower --task-retention, and once the next compaction has freed the space run `etcdctl alarm disarm` against a master")
            default:
                return APIError(status: 500, code: "store_error", message: e.description)
            }
        case is CancellationError:
            return .unavailable("unavailable", "the request was cancelled (the master is shutting down?); retry")
        default:
            return .unavailable("store_unavailable", "the cluster store is unavailable: \(error)")
        }
    }
}
