import ClusterModel
import Foundation
import Hummingbird
import Store

/// The opaque `continue` token of a paged task listing: the revision the listing reads at and the
/// last id returned, base64url-encoded. Every page reads at that revision, so a listing is one
/// consistent snapshot; once compacted, the token is refused with 410 (restart the listing).
struct ContinueToken: Equatable {
    var revision: Int64
    var after: String

    var encoded: String {
        Data("v1:\(revision):\(after)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init(revision: Int64, after: String) {
        self.revision = revision
        self.after = after
    }

    init(decoding text: String) throws(APIError) {
        var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        b64 += String(repeating: "=", count: (4 - b64.count % 4) % 4)
        guard let data = Data(base64Encoded: b64), let plain = String(data: data, encoding: .utf8) else {
            throw .invalid("continue", "not a token this API issued")
        }
        let parts = plain.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let revision = Int64(parts[1]), revision > 0, !parts[2].isEmpty else {
            throw .invalid("continue", "not a token this API issued")
        }
        self.revision = revision
        self.after = String(parts[2])
    }
}

extension OrchestratorAPI {
    /// `POST /api/v1/tasks`: 201 with the stored task and `Location`. With an `Idempotency-Key`
    /// header, a repeat of the same request (same key, same body) within 24 h answers 201 with the
    /// task the first one created and `Idempotent-Replayed: true`; the key with another body is 422.
    func createTask(_ request: Request) async throws -> Response {
        let body = try await request.readBody(limit: configuration.limits.maxBodyBytes)
        let idempotent = try request.headers[.idempotencyKey].map { (key) throws(APIError) in
            do {
                return try IdempotentRequest(key: key, body: body)
            } catch {
                throw APIError.invalid("Idempotency-Key", "must be 1-\(IdempotentRequest.maxKeyBytes) printable ASCII characters")
            }
        }
        let spec = try parser.parse(body)
        let record = TaskRecord(id: configuration.makeID(), spec: spec, now: configuration.now())
        let repository = self.repository
        let stored: TaskRecord
        var extra: HTTPFields = [:]
        if let idempotent {
            let nowMs = configuration.now()
            switch try await bounded({ try await repository.create(record, idempotent: idempotent, nowMs: nowMs) }) {
            case .created(let task): stored = task
            case .replayed(let task):
                stored = task
                extra[.idempotentReplayed] = "true"
            }
        } else {
            stored = try await bounded { try await repository.create(record) }
        }
        extra[.location] = "/api/v1/tasks/\(stored.id)"
        return jsonResponse(TaskView(stored), status: .created, revision: stored.revision, headers: extra)
    }

    /// `GET /api/v1/tasks?state=a,b&node=n&limit=k&continue=t`: in id order (submission order), at most
    /// `defaultPageSize` a page unless `limit` says otherwise.
    func listTasks(_ request: Request) async throws -> Response {
        let consistency = try request.readConsistency()
        let states = try Self.parseStates(request.query("state"))
        let node = request.query("node")
        if node?.isEmpty == true { throw APIError.invalid("node", "must not be empty") }
        let limit = Int(try request.int64Query("limit", range: 1...Int64(configuration.maxPageSize)) ?? Int64(configuration.defaultPageSize))
        // An empty token is the first page, as in Kubernetes.
        let tokenText = request.query("continue").flatMap { $0.isEmpty ? nil : $0 }
        let token: ContinueToken? = try tokenText.map { (text) throws(APIError) in try ContinueToken(decoding: text) }

        if let token {
            // The token may come from another master that was ahead of this one.
            try await reachRevision(token.revision, what: "the continue token's revision")
        }
        let repository = self.repository
        let page: TaskPage
        do {
            page = try await bounded {
                try await repository.taskPage(after: token?.after, limit: limit, revision: token?.revision ?? 0,
                                              consistency: consistency) { task in
                    (states?.contains(task.state) ?? true) && (node == nil || task.node == node)
                }
            }
        } catch StoreError.compacted(let oldest) where token != nil {
            throw APIError(status: 410, code: "continue_expired",
                           message: "the listing's snapshot at revision \(token!.revision) has been compacted (oldest available: \(oldest)); list again without continue")
        }
        let next = page.lastID.map { ContinueToken(revision: page.revision, after: $0).encoded }
        return jsonResponse(TaskListView(tasks: page.tasks.map(TaskView.init), revision: page.revision, next: next),
                            revision: page.revision)
    }

    /// `?state=a,b`: nil when absent.
    static func parseStates(_ text: String?) throws(APIError) -> Set<TaskState>? {
        guard let text else { return nil }
        var set = Set<TaskState>()
        for name in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let state = TaskState(rawValue: String(name)) else {
                throw .invalid("state", "unknown state \"\(name)\"; use \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            set.insert(state)
        }
        return set
    }

    /// `GET /api/v1/tasks/{id}`.
    func getTask(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let id = try pathID(context, kind: "task")
        let consistency = try request.readConsistency()
        let repository = self.repository
        let (task, revision) = try await bounded { try await repository.readTask(id, consistency: consistency) }
        guard let task else { throw APIError.notFound("no task \"\(id)\"") }
        return jsonResponse(TaskView(task), revision: revision)
    }

    /// `DELETE /api/v1/tasks/{id}`: cancels (see `ClusterRepository.cancelTask`). 200 with the task,
    /// cancelled now or already ended before (then unchanged: DELETE is idempotent).
    func cancelTask(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let id = try pathID(context, kind: "task")
        let repository = self.repository
        let now = configuration.now()
        let (task, _) = try await bounded { () async throws -> (TaskRecord, Bool) in
            do {
                return try await repository.cancelTask(id, now: now)
            } catch RepositoryError.notFound {
                throw APIError.notFound("no task \"\(id)\"")
            }
        }
        return jsonResponse(TaskView(task), revision: task.revision)
    }
}
