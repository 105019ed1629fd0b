import Hummingbird

/// Every route the API serves. The router is built from this list (one handler per case, by an
/// exhaustive switch), the 405 answers are derived from it, and a test holds the OpenAPI document
/// to it, so the three cannot drift apart.
public enum Route: String, Sendable, Hashable, CaseIterable {
    case createTask, listTasks, getTask, cancelTask, taskLogs
    case listNodes, getNode, deleteNode, drainNode, cordonNode, uncordonNode
    case events, cluster
    case listMembers, addMember, promoteMember, removeMember, snapshot
    case health, healthz, readyz, metrics, openAPI

    public var method: HTTPRequest.Method {
        switch self {
        case .createTask, .drainNode, .cordonNode, .uncordonNode, .addMember, .promoteMember: .post
        case .cancelTask, .deleteNode, .removeMember: .delete
        default: .get
        }
    }

    /// The path pattern, `{id}` for the record id.
    public var path: String {
        switch self {
        case .createTask, .listTasks: "/api/v1/tasks"
        case .getTask, .cancelTask: "/api/v1/tasks/{id}"
        case .taskLogs: "/api/v1/tasks/{id}/logs"
        case .listNodes: "/api/v1/nodes"
        case .getNode, .deleteNode: "/api/v1/nodes/{id}"
        case .drainNode: "/api/v1/nodes/{id}/drain"
        case .cordonNode: "/api/v1/nodes/{id}/cordon"
        case .uncordonNode: "/api/v1/nodes/{id}/uncordon"
        case .events: "/api/v1/events"
        case .cluster: "/api/v1/cluster"
        case .listMembers, .addMember: "/api/v1/cluster/members"
        case .promoteMember: "/api/v1/cluster/members/{id}/promote"
        case .removeMember: "/api/v1/cluster/members/{id}"
        case .snapshot: "/api/v1/cluster/snapshot"
        case .health: "/health"
        case .healthz: "/healthz"
        case .readyz: "/readyz"
        case .metrics: "/metrics"
        case .openAPI: "/api/v1/openapi.json"
        }
    }

    /// Health probes answer without a token: orchestrators and load balancers probe them bare.
    public var needsAuth: Bool {
        switch self {
        case .health, .healthz, .readyz: false
        default: true
        }
    }

    /// Liveness only: answered without touching the store (a stuck store must not get the process
    /// restarted by its liveness probe).
    var isLiveness: Bool { self == .health || self == .healthz }

    /// Paths that need no token, checked before routing (so an unauthenticated caller learns
    /// nothing about which other paths exist).
    static let openPaths: Set<String> = Set(allCases.filter { !$0.needsAuth }.map(\.path))

    /// Whether `requestPath` matches the pattern, segment by segment (`{…}` matches any one).
    func matches(_ requestPath: String) -> Bool {
        let want = path.split(separator: "/")
        let got = requestPath.split(separator: "/")
        guard want.count == got.count else { return false }
        return zip(want, got).allSatisfy { $0.first == "{" || $0 == $1 }
    }

    /// The methods served at a request path (for 405 and its `Allow` header).
    static func methods(at requestPath: String) -> [HTTPRequest.Method] {
        allCases.filter { $0.matches(requestPath) }.map(\.method)
    }
}
