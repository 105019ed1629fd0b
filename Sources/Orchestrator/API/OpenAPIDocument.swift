import ClusterModel

/// The OpenAPI 3.1 description of the API, served at `GET /api/v1/openapi.json`. Written by hand
/// (operations, parameters, schemas); a test holds its operations equal to `Route.allCases` and
/// checks every documented operation against the router. It follows the configuration: limits
/// become schema bounds, and security (with its 401s) is declared only when a token is set.
public struct OpenAPIDocument: Sendable {
    public var configuration: APIConfiguration

    public init(configuration: APIConfiguration = APIConfiguration()) {
        self.configuration = configuration
    }

    var authenticated: Bool { !(configuration.apiToken ?? "").isEmpty }
    var limits: TaskLimits { configuration.limits }

    /// The document as JSON bytes.
    public var json: [UInt8] { APIJSON.encode(document) }

    public var document: JSONValue {
        var doc: [String: JSONValue] = [
            "openapi": "3.1.0",
            "info": [
                "title": "Orchestrator API",
                "version": "1.0.0",
                "description": """
                    REST API of the task orchestrator, served by every master. Reads are served from the answering \
                    master's local state (add consistent=true for a linearizable read, min_revision=N to wait for a \
                    revision); writes go to the leader. Every response carries X-Orchestrator-Index (the store \
                    revision it reflects) and X-Orchestrator-Leader (the leader's id, when known). Errors are \
                    {"error":{"code","message"}}.
                    """,
            ],
            "paths": paths,
            "components": ["schemas": schemas],
        ]
        if authenticated {
            doc["security"] = [["bearerAuth": []]]
            doc["components"] = ["schemas": schemas, "securitySchemes": ["bearerAuth": ["type": "http", "scheme": "bearer"]]]
        }
        return .object(doc)
    }

    // MARK: Paths

    var paths: JSONValue {
        [
            "/api/v1/tasks": [
                "post": operation(
                    "createTask", "Submit a task", tag: "tasks",
                    description: "Unspecified resources default to cpu 1000 millicores and memory 512 MB. Bodies over \(limits.maxBodyBytes) bytes are refused with 413. With an Idempotency-Key header, the same request sent again within 24 h answers 201 with the task the first one created (and Idempotent-Replayed: true) instead of creating another; the key with a different body is 422.",
                    parameters: [["name": "Idempotency-Key", "in": "header", "required": false,
                                  "description": "Names this submission so that retries return its task (1-255 printable ASCII characters)",
                                  "schema": ["type": "string", "minLength": 1, "maxLength": 255, "pattern": #"^[!-~]+$"#]]],
                    body: ref("TaskSubmission"),
                    responses: ["201": json("The stored task (Location: /api/v1/tasks/{id})", ref("Task"))],
                    errors: [400, 413, 422, 507]),
                "get": operation(
                    "listTasks", "List tasks in submission order", tag: "tasks",
                    description: "Paged with limit and continue; every page of a listing reads at the revision of its first page. A continue token whose revision was compacted is refused with 410 continue_expired.",
                    parameters: [
                        list("state", "Comma-separated task states to keep", TaskState.allCases.map(\.rawValue), example: ["running", "pending"]),
                        query("node", "Keep tasks on this node", schema: ["type": "string", "minLength": 1]),
                        query("limit", "Largest page", schema: ["type": "integer", "minimum": 1, "maximum": .int(configuration.maxPageSize),
                                                                "default": .int(configuration.defaultPageSize)]),
                        query("continue", "Token from the previous page", schema: ["type": "string"]),
                        consistent, minRevision,
                    ],
                    responses: ["200": json("A page of tasks", ref("TaskList"))],
                    errors: [400, 410]),
            ],
            "/api/v1/tasks/{id}": [
                "get": operation("getTask", "One task", tag: "tasks", parameters: [id, consistent, minRevision],
                                 responses: ["200": json("The task", ref("Task"))], errors: [404]),
                "delete": operation(
                    "cancelTask", "Cancel a task", tag: "tasks",
                    description: "Pending, assigned and running tasks become cancelled; the node's allocation is released, so its worker stops the container. Idempotent: a task that already ended is returned unchanged.",
                    parameters: [id],
                    responses: ["200": json("The task, cancelled or already ended", ref("Task"))], errors: [404, 409]),
            ],
            "/api/v1/tasks/{id}/logs": [
                "get": operation(
                    "getTaskLogs", "A task's output, fetched from its worker", tag: "tasks",
                    description: """
                        Plain text: stdout and stderr interleaved as written (or one of them with stream), cut by since, \
                        then tail, then limit_bytes. With follow=true: Server-Sent Events, the selected past output then \
                        new output as it is written, each an `event: output` message (TaskLogOutput), until the task's copy \
                        ends: then one `event: end` message (TaskLogEnd) and the stream closes (do not reconnect: follow \
                        again with since). Idle streams get `: keepalive` comments; an error mid-stream is an \
                        `event: error` message with an Error body. Process tasks' output times are when the worker \
                        first saw it (within a quarter second).
                        """,
                    parameters: [id, query("limit_bytes", "At most this many trailing bytes (default 1 MiB)",
                                          schema: ["type": "integer", "minimum": 1, "maximum": .int(configuration.maxLogBytes)]),
                                 query("tail", "Only the last lines (0: none)", schema: ["type": "integer", "minimum": 0, "maximum": 1_000_000]),
                                 query("since", "Only output written at or after this time: whole seconds since 1970, or RFC 3339",
                                       schema: ["type": "string", "pattern": .string(LogTime.pattern), "example": "2026-01-02T15:04:05Z"]),
                                 query("stream", "Which output", schema: ["type": "string", "enum": ["all", "stdout", "stderr"], "default": "all"]),
                                 query("follow", "Stream new output until the task's copy ends", schema: ["type": "boolean", "default": false]),
                                 consistent, minRevision],
                    responses: ["200": ["description": "The output",
                                        "content": ["text/plain": ["schema": ["type": "string"]],
                                                    "text/event-stream": ["schema": serverSentEvent(logEventSchemas)]],
                                        "x-event-schemas": .object(logEventSchemas)]],
                    errors: [400, 404, 409, 501, 502]),
            ],
            "/api/v1/nodes": [
                "get": operation("listNodes", "List nodes", tag: "nodes", parameters: [consistent, minRevision],
                                 responses: ["200": json("Every node, by id", ref("NodeList"))], errors: [400]),
            ],
            "/api/v1/nodes/{id}": [
                "get": operation("getNode", "One node", tag: "nodes", parameters: [id, consistent, minRevision],
                                 responses: ["200": json("The node", ref("Node"))], errors: [404]),
                "delete": operation("deleteNode", "Remove a node with no task placed on it (a node_removed event); a worker still running as it joins again as a new node",
                                    tag: "nodes", description: "Drain a node first: while tasks are placed on it the answer is 409 node_busy.",
                                    parameters: [id], responses: ["200": json("The node as it was", ref("Node"))], errors: [404, 409]),
            ],
            "/api/v1/nodes/{id}/drain": [
                "post": nodeAction("drainNode", "Drain a node: unschedulable, and its tasks move to other nodes (a down node stays down)"),
            ],
            "/api/v1/nodes/{id}/cordon": [
                "post": nodeAction("cordonNode", "Cordon a node: no new tasks, running ones stay"),
            ],
            "/api/v1/nodes/{id}/uncordon": [
                "post": nodeAction("uncordonNode", "Uncordon a node: schedulable again; a drained node returns to ready"),
            ],
            "/api/v1/events": [
                "get": operation(
                    "streamEvents", "Server-Sent Events of every change", tag: "events",
                    description: """
                        Each message is `id: <revision>` (or `<revision>:<i>` for all but the last event of a revision \
                        with several), `event: <type>`, `data: <Event JSON>`. Resume with Last-Event-ID or since \
                        (events after it). History already compacted: 410 before the stream starts; lost mid-stream \
                        (also while a client that reads too slowly is being caught up from history): an `event: error` \
                        message (no id) with an Error body ends the stream. A master that stops ends it with an \
                        `event: shutdown` message (no id) with a StreamShutdown body. Idle streams get `: keepalive` \
                        comments. x-event-schemas names the schema of each event's data.
                        """,
                    parameters: [
                        query("since", "Send the events after this event id", schema: ["type": "string", "pattern": .string(Self.eventIDPattern), "example": "42"]),
                        list("type", "Comma-separated event types to keep", ClusterEventType.allCases.map(\.rawValue), example: ["task_failed", "node_down"]),
                        ["name": "Last-Event-ID", "in": "header", "required": false,
                         "description": "Resume after this event id (wins over since; empty is ignored)",
                         "schema": ["type": "string", "pattern": .string("^(?:\(Self.eventIDDigits))?$")]],
                        minRevision,
                        query("timeout_seconds", "End the stream after this many seconds, whatever happens (as a Kubernetes watch's timeoutSeconds); resume with Last-Event-ID",
                              schema: ["type": "integer", "minimum": 1, "maximum": .int(Int(OrchestratorAPI.maxEventStreamSeconds))]),
                    ],
                    responses: ["200": ["description": "The stream",
                                        "content": ["text/event-stream": ["schema": serverSentEvent(eventSchemas)]],
                                        "x-event-schemas": .object(eventSchemas)]],
                    errors: [400, 410]),
            ],
            "/api/v1/cluster": [
                "get": operation("getCluster", "Masters, leader, term, commit and applied index, store kind", tag: "cluster",
                                 parameters: [consistent, minRevision],
                                 responses: ["200": json("The cluster", ref("Cluster"))], errors: [400]),
            ],
            "/api/v1/cluster/members": [
                "get": operation("listMembers", "The masters as this master's replica of the Raft membership has them", tag: "cluster",
                                 responses: ["200": json("The members", ref("MasterMemberList"))], errors: [400]),
                "post": operation(
                    "addMember", "Add a master as a learner", tag: "cluster",
                    description: "The new master (started with --join, or about to be) receives the log, through a snapshot when needed, without voting; it is promoted once caught up (it asks itself, or POST .../promote). One membership change at a time: 409 change_in_progress while another is not applied; 409 member_exists when the name or rpc address is taken.",
                    body: ref("MasterMemberAddition"),
                    responses: ["201": json("The new learner (Location: /api/v1/cluster/members/{id})", ref("MasterMember"))],
                    errors: [400, 409]),
            ],
            "/api/v1/cluster/members/{id}": [
                "delete": operation(
                    "removeMember", "Remove a master", tag: "cluster",
                    description: "The member leaves the Raft configuration once the change commits; a removed leader steps down and the others elect a new one (Raft thesis §4.2.2). The removed master stops. 409 change_in_progress while another change is not applied.",
                    parameters: [id], responses: ["204": ["description": "Removed"]], errors: [404, 409]),
            ],
            "/api/v1/cluster/members/{id}/promote": [
                "post": operation(
                    "promoteMember", "Promote a caught-up learner to voter", tag: "cluster",
                    description: "409 learner_not_caught_up while the learner trails the leader's log, 409 change_in_progress while another change is not applied; 400 not_a_learner for a voter.",
                    parameters: [id], responses: ["200": json("The member, now a voter", ref("MasterMember"))], errors: [404, 409]),
            ],
            "/api/v1/cluster/snapshot": [
                "get": operation(
                    "getSnapshot", "A backup of the whole store", tag: "cluster",
                    description: "Every write acknowledged before the request is in it (a linearizable read first). The same file etcdctl snapshot save writes from a master's etcd API; `master snapshot restore FILE --id NAME --peers ... --data-dir DIR` founds a new cluster from it. 501 not_supported with --store etcd (back up that etcd itself).",
                    responses: ["200": ["description": "The backup file",
                                        "content": ["application/octet-stream": ["schema": ["type": "string", "format": "binary"]]]]],
                    errors: [501, 503]),
            ],
            "/health": ["get": liveness("health")],
            "/healthz": ["get": liveness("healthz")],
            "/readyz": [
                "get": operation("readyz", "Readiness: a leader is known and this master has applied the leader's commit index of the moment (a ReadIndex round within 2 s); 503 with the reason otherwise, and while the master stops", tag: "health",
                                 responses: ["200": json("Ready", ref("Health"))], errors: [503], open: true),
            ],
            "/metrics": [
                "get": operation("metrics", "Prometheus metrics (text format 0.0.4)", tag: "health",
                                 responses: ["200": ["description": "Metrics",
                                                     "content": ["text/plain": ["schema": ["type": "string"]]]]],
                                 errors: []),
            ],
            "/api/v1/openapi.json": [
                "get": operation("openapi", "This document", tag: "meta",
                                 responses: ["200": json("OpenAPI 3.1 document", ["type": "object"])], errors: []),
            ],
        ]
    }

    /// The schema of each SSE message's `data:`, by its `event:` name.
    var eventSchemas: [String: JSONValue] {
        var out: [String: JSONValue] = ["error": ref("Error"), "shutdown": ref("StreamShutdown")]
        for type in ClusterEventType.allCases { out[type.rawValue] = ref("Event") }
        return out
    }

    /// The schema of the messages of a log follow's stream, by event name.
    var logEventSchemas: [String: JSONValue] {
        ["output": ref("TaskLogOutput"), "end": ref("TaskLogEnd"), "error": ref("Error"), "shutdown": ref("StreamShutdown")]
    }

    /// One message of a `text/event-stream` (the per-event schema, as OpenAPI 3.2's `itemSchema`
    /// and tools reading 3.1 take it): its `event` is one of `schemas`' names, its `id` a cursor,
    /// its `data` JSON whose schema `contentSchema` gives for that event.
    func serverSentEvent(_ schemas: [String: JSONValue]) -> JSONValue {
        let names = schemas.keys.sorted()
        return [
            "type": "object", "required": ["event", "data"],
            "properties": [
                "event": ["type": "string", "enum": .array(names.map { .string($0) })],
                "id": ["type": "string"], "retry": ["type": "integer"],
                "data": ["type": "string", "contentMediaType": "application/json"],
            ],
            "oneOf": .array(names.map { name in
                ["properties": ["event": ["const": .string(name)], "data": ["contentSchema": schemas[name]!]]]
            }),
        ]
    }

    func nodeAction(_ id: String, _ summary: String) -> JSONValue {
        operation(id, summary, tag: "nodes", description: "Repeating it changes nothing. A body, if any, is ignored.",
                  parameters: [self.id], responses: ["200": json("The node as it now is", ref("Node"))], errors: [404, 409, 507])
    }

    func liveness(_ id: String) -> JSONValue {
        operation(id, "Liveness: 200 while the process serves (the store is not consulted)", tag: "health",
                  responses: ["200": json("Alive", ref("Health"))], errors: [], open: true)
    }

    static let errorText: [Int: String] = [
        400: "Malformed JSON, a field of the wrong type or out of range, an unknown parameter value, or a min_revision beyond the cluster's current revision (future_revision)",
        401: "Missing or wrong bearer token",
        404: "No such record",
        405: "Method not allowed on this path",
        409: "Conflicting state (e.g. logs of a task never placed, another membership change in progress), or a record that kept changing",
        410: "The revision asked for has been compacted",
        413: "Body over 1 MiB",
        422: "An Idempotency-Key reused with a different request body",
        501: "The worker is too old for follow, tail, since or stream; a backup of a master with --store etcd",
        502: "The worker did not return the logs",
        503: "No leader within the timeout, store unavailable, or not ready",
        504: "A min_revision the cluster has, not applied by this master within the timeout (revision_timeout)",
        507: "The store is over its quota (store_full, the NOSPACE alarm): the write would grow it",
    ]

    func operation(_ id: String, _ summary: String, tag: String, description: String? = nil,
                          parameters: [JSONValue] = [], body: JSONValue? = nil,
                          responses: [String: JSONValue], errors: [Int], open: Bool = false) -> JSONValue {
        var all = responses
        // Every authenticated route can answer 401; every store-backed one 503; any with query
        // parameters 400 (a malformed value), and those with min_revision 504.
        var codes = Set(errors)
        if !open { codes.insert(503) }
        if !open && authenticated { codes.insert(401) }
        if !parameters.isEmpty { codes.insert(400) }
        if parameters.contains(minRevision) { codes.insert(504) }
        for code in codes.sorted() { all[String(code)] = json(Self.errorText[code]!, ref("Error")) }
        var op: [String: JSONValue] = ["operationId": .string(id), "summary": .string(summary), "tags": [.string(tag)],
                                       "responses": .object(all)]
        if let description { op["description"] = .string(description) }
        if !parameters.isEmpty { op["parameters"] = .array(parameters) }
        if let body { op["requestBody"] = ["required": true, "content": ["application/json": ["schema": body]]] }
        if open && authenticated { op["security"] = [] }
        return .object(op)
    }

    func json(_ description: String, _ schema: JSONValue) -> JSONValue {
        ["description": .string(description), "content": ["application/json": ["schema": schema]]]
    }

    func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }

    func query(_ name: String, _ description: String, schema: JSONValue) -> JSONValue {
        ["name": .string(name), "in": "query", "required": false, "description": .string(description), "schema": schema]
    }

    /// A comma-separated list of enumerated values (`a,b`): an array in the form style, not exploded.
    func list(_ name: String, _ description: String, _ values: [String], example: [String]) -> JSONValue {
        ["name": .string(name), "in": "query", "required": false, "description": .string(description),
         "style": "form", "explode": false, "example": .array(example.map { .string($0) }),
         "schema": ["type": "array", "minItems": 1, "items": enumeration(values)]]
    }

    /// An event id (`EventCursor`): a revision, or `revision:index`.
    static let eventIDDigits = "[0-9]{1,18}(?::[0-9]{1,9})?"
    static let eventIDPattern = "^\(eventIDDigits)$"

    var id: JSONValue { ["name": "id", "in": "path", "required": true, "schema": ["type": "string"]] }
    var consistent: JSONValue { query("consistent", "true: a linearizable read (through the leader)", schema: ["type": "boolean"]) }
    var minRevision: JSONValue {
        query("min_revision", "Wait (up to \(configuration.minRevisionTimeout), else 504 revision_timeout) until this master has applied this revision; a revision beyond the cluster's current one is refused at once with 400 future_revision",
              schema: ["type": "integer", "format": "int64", "minimum": 0, "maximum": .int(Int(Int64.max))])
    }
}
