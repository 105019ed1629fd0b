import ClusterModel

extension OpenAPIDocument {
    func object(_ properties: [String: JSONValue], required: [String] = [], description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { o["required"] = .array(required.sorted().map { .string($0) }) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    /// An object schema that refuses unknown fields, as the parser does.
    func closed(_ schema: JSONValue) -> JSONValue {
        guard case .object(var o) = schema else { return schema }
        o["additionalProperties"] = false
        return .object(o)
    }

    /// The submitted fields: optional ones may be null (the parser reads null as absent).
    func submissionProperties(_ properties: [String: JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (name, schema) in properties {
            guard name != "name" && name != "image", case .object(var o) = schema else {
                out[name] = schema
                continue
            }
            // OpenAPI 3.1 (JSON Schema 2020-12): null is a type of its own.
            if o["$ref"] != nil {
                out[name] = ["anyOf": [schema, ["type": "null"]]]
                continue
            }
            if case .string(let type)? = o["type"] { o["type"] = [.string(type), "null"] }
            // An enum must list null itself to admit it.
            if case .array(let values)? = o["enum"] { o["enum"] = .array(values + [.null]) }
            out[name] = .object(o)
        }
        return out
    }

    func enumeration(_ values: [String]) -> JSONValue {
        ["type": "string", "enum": .array(values.map { .string($0) })]
    }

    var string: JSONValue { ["type": "string"] }
    var integer: JSONValue { ["type": "integer", "format": "int64"] }
    var stringMap: JSONValue { ["type": "object", "additionalProperties": ["type": "string"]] }

    /// What `TaskSpecParser.validateImage` accepts: `[host/]path[:tag][@sha256:digest]`, where a
    /// host is a first component with a dot or a colon (or `localhost`), path components are lower case.
    static let imagePattern = #"^(?:[^/@]*[.:][^/@]*/|localhost/)?[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?(?:/[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"#

    var schemas: JSONValue {
        let taskStates = enumeration(TaskState.allCases.map(\.rawValue))
        let algorithms = enumeration(SchedulingAlgorithm.allCases.map(\.rawValue))
        let resources = closed(object(["cpu": ["type": "integer", "minimum": 1, "maximum": .int(limits.maxCPU), "description": "Millicores (1000 = one core)"],
                                "memory": ["type": "integer", "minimum": 1, "maximum": .int(limits.maxMemory), "description": "Megabytes"]],
                               // Submitted, either may be left out (cpu 1000, memory 512); tasks show both.
                               description: "Each amount defaults when left out of a submission (cpu 1000, memory 512)"))
        // What a node has, has given out and has left: zero is a valid amount.
        let amounts = object(["cpu": ["type": "integer", "minimum": 0, "description": "Millicores"],
                              "memory": ["type": "integer", "minimum": 0, "description": "Megabytes"]],
                             required: ["cpu", "memory"])
        let restart = closed(object([
            "condition": enumeration(RestartCondition.allCases.map(\.rawValue)),
            "max_retries": ["type": "integer", "minimum": 0, "maximum": 1000],
            "backoff_ms": ["type": "integer", "minimum": 0, "maximum": 3_600_000],
            "max_backoff_ms": ["type": "integer", "minimum": 0, "maximum": 86_400_000,
                               "description": "Caps the doubling backoff (default 60000); below backoff_ms it caps every delay"],
        ]))
        let specProperties: [String: JSONValue] = [
            "name": ["type": "string", "minLength": 1, "maxLength": .int(limits.maxNameLength)],
            "image": ["type": "string", "example": "alpine", "maxLength": 255, "pattern": .string(Self.imagePattern)],
            "command": ["type": "array", "items": string, "maxItems": .int(limits.maxCommandArguments)],
            // Names as patternProperties (with no other property allowed): what schema-driven tools
            // honour where propertyNames is ignored.
            "env": ["type": "object", "additionalProperties": false, "patternProperties": ["^[^=]+$": string],
                    "maxProperties": .int(limits.maxEnvEntries),
                    "description": "Variable names are non-empty and without '='"],
            "resources": ref("Resources"), "restart_policy": ref("RestartPolicy"),
            "node_selector": stringMap, "scheduler": algorithms,
        ]
        return [
            "Error": object(["error": object(["code": string, "message": string], required: ["code", "message"])],
                            required: ["error"]),
            "Resources": resources,
            "Amounts": amounts,
            "RestartPolicy": restart,
            "TaskSubmission": [
                "type": "object", "additionalProperties": false, "required": ["image", "name"],
                "properties": .object(submissionProperties(specProperties)),
                "description": "Unknown fields are refused; null is the same as leaving an optional field out. resources defaults to {cpu: 1000, memory: 512}.",
            ],
            "TaskSpec": object(specProperties, required: ["command", "env", "image", "name", "node_selector", "resources", "restart_policy"]),
            "FilterOutcome": object(["filter": string, "removed": ["type": "integer"]], required: ["filter", "removed"]),
            "Placement": object(["node": string, "score": ["type": "number"], "algorithm": algorithms,
                                 "filters": ["type": "array", "items": ref("FilterOutcome")]],
                                required: ["algorithm", "filters", "node", "score"],
                                description: "Why the scheduler chose this node"),
            "Task": object([
                "id": string, "spec": ref("TaskSpec"), "state": taskStates,
                "node": ["type": "string", "description": "The node it is (or was last) on"],
                "epoch": integer, "retries": ["type": "integer"],
                "reason": ["type": "string", "description": "Why it is pending, failed, lost or cancelled"],
                "moving": ["type": "string",
                           "description": "Set while its node drains: the copy there is being stopped, and the task moves (pending again) once the worker confirms the stop"],
                "exit_code": ["type": "integer"], "placement": ref("Placement"),
                "not_before": ["type": "integer", "format": "int64", "description": "Not scheduled before (ms since 1970)"],
                "runtime_start_ms": ["type": "integer", "format": "int64",
                                     "description": "How long the worker's runtime took to start the current copy (ms)"],
                "created_at": ["type": "integer", "format": "int64", "description": "ms since 1970"],
                "updated_at": ["type": "integer", "format": "int64", "description": "ms since 1970"],
                "revision": ["type": "integer", "format": "int64", "description": "Store revision of this version"],
            ], required: ["created_at", "epoch", "id", "reason", "retries", "revision", "spec", "state", "updated_at"]),
            "TaskList": object(["tasks": ["type": "array", "items": ref("Task")],
                                "revision": integer,
                                "continue": ["type": "string", "description": "Present when more may follow"]],
                               required: ["revision", "tasks"]),
            "Node": object([
                "id": string, "state": enumeration(NodeState.allCases.map(\.rawValue)), "schedulable": ["type": "boolean"],
                "labels": stringMap, "capacity": ref("Amounts"), "allocated": ref("Amounts"), "free": ref("Amounts"),
                "task_count": ["type": "integer"], "address": string,
                "last_heartbeat": ["type": "integer", "format": "int64", "description": "ms, master clock"],
                "revision": integer,
            ], required: ["address", "allocated", "capacity", "free", "id", "labels", "last_heartbeat", "revision",
                          "schedulable", "state", "task_count"]),
            "NodeList": object(["nodes": ["type": "array", "items": ref("Node")], "revision": integer],
                               required: ["nodes", "revision"]),
            "Member": object(["id": string, "api_address": string, "role": enumeration(MemberRole.allCases.map(\.rawValue))],
                             required: ["api_address", "id", "role"]),
            "Cluster": object([
                "node_id": ["type": "string", "description": "The master that answered"],
                "leader_id": ["type": ["string", "null"]], "term": ["type": ["integer", "null"]],
                "commit_index": ["type": ["integer", "null"]], "applied_index": ["type": ["integer", "null"]],
                "store": enumeration(["raft", "etcd", "memory"]), "ready": ["type": "boolean"],
                "members": ["type": "array", "items": ref("Member")], "default_scheduler": algorithms,
                "revision": integer,
            ], required: ["applied_index", "commit_index", "default_scheduler", "leader_id", "members", "node_id",
                          "ready", "revision", "store", "term"]),
            "MasterMember": object([
                "id": ["type": "integer", "format": "int64", "minimum": 1, "description": "Raft member id (etcdctl prints it in hex)"],
                "name": ["type": "string", "description": "The master's --id; empty until a master added by address alone has started"],
                "rpc_address": ["type": "string", "description": "Raft and worker protocol, host:port"],
                "api_address": ["type": "string", "description": "REST API, host:port (empty when not known yet)"],
                "etcd_address": ["type": "string", "description": "etcd v3 API, host:port (empty when not served or not known)"],
                "learner": ["type": "boolean", "description": "A learner receives the log but does not vote until promoted"],
            ], required: ["api_address", "etcd_address", "id", "learner", "name", "rpc_address"]),
            "MasterMemberList": object([
                "cluster_id": ["type": "string", "description": "The cluster's id (hex)"],
                "members": ["type": "array", "items": ref("MasterMember")],
            ], required: ["cluster_id", "members"]),
            "MasterMemberAddition": closed(object([
                "name": ["type": "string", "pattern": .string(MemberFieldPatterns.name), "description": "The new master's --id"],
                "rpc_address": ["type": "string", "pattern": .string(MemberFieldPatterns.hostPort),
                                "description": "The new master's --rpc-addr as the others reach it, host:port"],
                "api_address": ["type": "string", "pattern": .string(MemberFieldPatterns.optionalHostPort), "description": "Its REST API, host:port"],
                "etcd_address": ["type": "string", "pattern": .string(MemberFieldPatterns.optionalHostPort), "description": "Its etcd v3 API, host:port"],
            ], required: ["rpc_address"])),
            "Health": object(["status": string,
                              "alarms": ["type": "array", "items": string,
                                         "description": "The store's alarms, e.g. \"NOSPACE\" past --quota-backend-bytes: writes that grow the store are refused (507), reads and deletes go on"]],
                             required: ["status"]),
            "Leader": object(["id": string, "term": ["type": "integer"]], required: ["id", "term"]),
            "Event": object([
                "type": enumeration(ClusterEventType.allCases.map(\.rawValue)),
                "revision": integer,
                "previous_state": ["type": "string", "description": "State of the task or node before the change"],
                "task": ref("Task"), "node": ref("Node"), "leader": ref("Leader"),
                "id": ["type": "string", "description": "Id of a deleted task or removed node"],
            ], required: ["revision", "type"], description: "The data of one SSE message: task_* events carry task (task_deleted: id), node_* events node (node_removed: id), leader_elected leader"),
            "TaskLogOutput": object([
                "stream": enumeration(["stdout", "stderr"]),
                "time": ["type": "string", "format": "date-time", "description": "When it was written (process tasks: first seen by the worker)"],
                "text": ["type": "string", "description": "The bytes written, as UTF-8 (invalid sequences replaced)"],
            ], required: ["stream", "text", "time"], description: "The data of an `output` message of a log follow"),
            "TaskLogEnd": object([
                "exit_code": ["type": "integer", "format": "int32", "description": "When the copy exited (absent when it was stopped or failed to run)"],
            ], required: [], description: "The data of the `end` message that closes a log follow"),
            "StreamShutdown": object(["reason": string], required: ["reason"],
                                     description: "The data of the `shutdown` message that ends a stream when its master stops"),
        ]
    }
}
