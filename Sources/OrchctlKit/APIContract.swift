/// What orchctl relies on in the REST API: the operations it calls with the parameters it sends,
/// and the fields it reads from each schema. The integration tests check it against the live
/// `/api/v1/openapi.json`, so a change of the API that would break the CLI fails there, not in an
/// operator's hands.
public enum APIContract {
    public struct Operation: Sendable, Hashable {
        public var method: String
        public var path: String
        /// Query parameters and headers orchctl sends.
        public var parameters: [String]

        init(_ method: String, _ path: String, _ parameters: [String] = []) {
            self.method = method
            self.path = path
            self.parameters = parameters
        }
    }

    public static let operations: [Operation] = [
        Operation("post", "/api/v1/tasks", ["Idempotency-Key"]),
        Operation("get", "/api/v1/tasks", ["state", "node", "limit", "continue"]),
        Operation("get", "/api/v1/tasks/{id}"),
        Operation("delete", "/api/v1/tasks/{id}"),
        Operation("get", "/api/v1/tasks/{id}/logs", ["limit_bytes", "tail", "since", "stream", "follow"]),
        Operation("get", "/api/v1/nodes"),
        Operation("get", "/api/v1/nodes/{id}"),
        Operation("delete", "/api/v1/nodes/{id}"),
        Operation("post", "/api/v1/nodes/{id}/drain"),
        Operation("post", "/api/v1/nodes/{id}/cordon"),
        Operation("post", "/api/v1/nodes/{id}/uncordon"),
        Operation("get", "/api/v1/events", ["type", "Last-Event-ID"]),
        Operation("get", "/api/v1/cluster"),
        Operation("get", "/api/v1/cluster/members"),
        Operation("post", "/api/v1/cluster/members"),
        Operation("post", "/api/v1/cluster/members/{id}/promote"),
        Operation("delete", "/api/v1/cluster/members/{id}"),
        Operation("get", "/api/v1/cluster/snapshot"),
        Operation("get", "/readyz"),
    ]

    /// Schema name → the properties orchctl reads.
    public static let fields: [String: [String]] = [
        "Task": ["id", "spec", "state", "node", "retries", "reason", "exit_code", "placement", "not_before", "created_at",
                 "updated_at", "revision", "moving"],
        "TaskSpec": ["name", "image", "command", "env", "resources", "restart_policy", "node_selector", "scheduler"],
        "RestartPolicy": ["condition", "max_retries"],
        "Placement": ["node", "score", "algorithm", "filters"],
        "FilterOutcome": ["filter", "removed"],
        "TaskList": ["tasks", "revision", "continue"],
        "Node": ["id", "state", "schedulable", "labels", "capacity", "allocated", "free", "task_count", "address",
                 "last_heartbeat", "revision"],
        "NodeList": ["nodes", "revision"],
        "Member": ["id", "api_address", "role"],
        "MasterMember": ["id", "name", "learner", "rpc_address", "api_address"],
        "MasterMemberList": ["members"],
        "Cluster": ["node_id", "leader_id", "term", "commit_index", "applied_index", "store", "members", "default_scheduler", "revision"],
        "Leader": ["id", "term"],
        "Event": ["type", "revision", "task", "node", "leader", "id", "previous_state"],
        "Error": ["error"],
    ]

    /// What `document` (an OpenAPI 3 document) lacks of the above, one line each; empty when
    /// orchctl's use of the API is all documented.
    public static func problems(in document: JSONValue) -> [String] {
        var problems: [String] = []
        let paths = document["paths"]?.object ?? [:]
        for op in operations {
            guard let operation = paths[op.path]?[op.method], !operation.isNull else {
                problems.append("\(op.method.uppercased()) \(op.path) is not in the document")
                continue
            }
            let declared = Set((operation["parameters"]?.array ?? []).compactMap { $0["name"]?.string })
            for name in op.parameters where !declared.contains(name) {
                problems.append("\(op.method.uppercased()) \(op.path): parameter \(name) is not declared")
            }
        }
        let schemas = document["components"]?["schemas"]?.object ?? [:]
        for (name, wanted) in fields.sorted(by: { $0.key < $1.key }) {
            guard let properties = schemas[name]?["properties"]?.object else {
                problems.append("schema \(name) is not in the document")
                continue
            }
            for field in wanted where properties[field] == nil {
                problems.append("schema \(name): property \(field) is not in the document")
            }
        }
        return problems
    }
}
