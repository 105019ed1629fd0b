extension OpenAPIDocument {
    static func object(_ properties: [String: JSONValue], required: [String] = [], description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { o["required"] = .array(required.sorted().map { .string($0) }) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static func enumeration(_ values: [String]) -> JSONValue {
        ["type": "string", "enum": .array(values.map { .string($0) })]
    }

    static let string: JSONValue = ["type": "string"]
    static let integer: JSONValue = ["type": "integer", "format": "int64"]
    static let stringMap: JSONValue = ["type": "object", "additionalProperties": ["type": "string"]]

    static var schemas: JSONValue {
        let taskStates = enumeration(TaskState.allCases.map(\.rawValue))
        let algorithms = enumeration(SchedulingAlgorithm.allCases.map(\.rawValue))
        let resources = object(["cpu": ["type": "integer", "minimum": 1, "description": "Millicores (1000 = one core)"],
                                "memory": ["type": "integer", "minimum": 1, "description": "Megabytes"]],
                               required: ["cpu", "memory"])
        let restart = object([
            "condition": enumeration(RestartCondition.allCases.map(\.rawValue)),
            "max_retries": ["type": "integer", "minimum": 0, "maximum": 1000],
            "backoff_ms": ["type": "integer", "minimum": 0],
            "max_backoff_ms": ["type": "integer", "minimum": 0],
        ])
        let specProperties: [String: JSONValue] = [
            "name": string, "image": ["type": "string", "example": "alpine"],
            "command": ["type": "array", "items": string], "env": stringMap,
            "resources": ref("Resources"), "restart_policy": ref("RestartPolicy"),
            "node_selector": stringMap, "scheduler": algorithms,
        ]
        return [
            "Error": object(["error": object(["code": string, "message": string], required: ["code", "message"])],
                            required: ["error"]),
            "Resources": resources,
            "RestartPolicy": restart,
            "TaskSubmission": [
                "type": "object", "additionalProperties": false, "required": ["image", "name"],
                "properties": .object(specProperties),
                "description": "Unknown fields are refused. resources defaults to {cpu: 1000, memory: 512}.",
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
                "exit_code": ["type": "integer"], "placement": ref("Placement"),
                "not_before": ["type": "integer", "format": "int64", "description": "Not scheduled before (ms since 1970)"],
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
                "labels": stringMap, "capacity": ref("Resources"), "allocated": ref("Resources"), "free": ref("Resources"),
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
                "leader_id": ["type": "string", "nullable": true], "term": ["type": "integer", "nullable": true],
                "commit_index": ["type": "integer", "nullable": true], "applied_index": ["type": "integer", "nullable": true],
                "store": enumeration(["raft", "etcd", "memory"]), "ready": ["type": "boolean"],
                "members": ["type": "array", "items": ref("Member")], "default_scheduler": algorithms,
                "revision": integer,
            ], required: ["applied_index", "commit_index", "default_scheduler", "leader_id", "members", "node_id",
                          "ready", "revision", "store", "term"]),
            "Health": object(["status": string], required: ["status"]),
            "Leader": object(["id": string, "term": ["type": "integer"]], required: ["id", "term"]),
            "Event": object([
                "type": enumeration(ClusterEventType.allCases.map(\.rawValue)),
                "revision": integer,
                "previous_state": ["type": "string", "description": "State of the task or node before the change"],
                "task": ref("Task"), "node": ref("Node"), "leader": ref("Leader"),
                "id": ["type": "string", "description": "Id of a deleted task or removed node"],
            ], required: ["revision", "type"], description: "The data of one SSE message"),
        ]
    }
}
