import Hummingbird
import Store

extension OrchestratorAPI {
    /// `GET /api/v1/nodes`: every node, sorted by id.
    func listNodes(_ request: Request) async throws -> Response {
        let consistency = try request.readConsistency()
        let repository = self.repository
        let (nodes, revision, heartbeats) = try await bounded { () async throws -> ([NodeRecord], Int64, [String: Int64]) in
            let (nodes, revision) = try await repository.readNodes(consistency: consistency)
            return (nodes, revision, try await repository.heartbeats(consistency: consistency))
        }
        let views = nodes.map { NodeView($0, heartbeat: heartbeats[$0.info.id]) }
        return jsonResponse(NodeListView(nodes: views, revision: revision), revision: revision)
    }

    /// `GET /api/v1/nodes/{id}`.
    func getNode(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let id = try pathID(context, kind: "node")
        let consistency = try request.readConsistency()
        let repository = self.repository
        let (node, revision, heartbeat) = try await bounded { () async throws -> (NodeRecord?, Int64, Int64?) in
            let (node, revision) = try await repository.readNode(id, consistency: consistency)
            return (node, revision, try await repository.heartbeat(of: id, consistency: consistency))
        }
        guard let node else { throw APIError.notFound("no node \"\(id)\"") }
        return jsonResponse(NodeView(node, heartbeat: heartbeat), revision: revision)
    }

    /// `DELETE /api/v1/nodes/{id}`: 200 with the node as it was; 409 `node_busy` while tasks are
    /// placed on it (drain it first).
    func deleteNode(_ context: APIRequestContext) async throws -> Response {
        let id = try pathID(context, kind: "node")
        let repository = self.repository
        let node = try await bounded { () async throws -> NodeRecord in
            do {
                return try await repository.removeNode(id)
            } catch RepositoryError.notFound {
                throw APIError.notFound("no node \"\(id)\"")
            } catch ClusterRepository.NodeRemovalRefusal.busy(let tasks) {
                throw APIError.conflict("node_busy", "node \"\(id)\" has \(tasks) task(s) placed on it: drain it first (POST /api/v1/nodes/\(id)/drain) and delete it once they have moved")
            }
        }
        return jsonResponse(NodeView(node, heartbeat: nil), revision: node.revision)
    }

    /// `POST /api/v1/nodes/{id}/drain|cordon|uncordon`: 200 with the node as it now is. Repeating
    /// one is harmless (nothing is written the second time). The request body, if any, is ignored.
    func changeNode(_ request: Request, _ context: APIRequestContext,
                    _ change: @escaping @Sendable (inout NodeRecord) -> Void) async throws -> Response {
        let id = try pathID(context, kind: "node")
        let repository = self.repository
        let node = try await bounded { () async throws -> NodeRecord in
            do {
                return try await repository.updateNode(id, change).node
            } catch RepositoryError.notFound {
                throw APIError.notFound("no node \"\(id)\"")
            }
        }
        return jsonResponse(NodeView(node), revision: node.revision)
    }
}
