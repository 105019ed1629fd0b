import Foundation
import Hummingbird

/// The masters' membership as the REST API changes it: implemented by the master (the leader makes
/// each change; a follower passes it on), faked in tests. Errors are `MembershipError`s.
public protocol MembershipSource: Sendable {
    /// The members as this master's replica knows them, and the cluster's id.
    func listMembers() async throws -> (clusterID: String, members: [MasterMember])
    /// Adds a master as a learner; it is promoted once caught up (by itself, or `promoteMember`).
    func addMember(name: String, rpcAddress: String, apiAddress: String, etcdAddress: String) async throws -> MasterMember
    /// Promotes a caught-up learner to voter.
    func promoteMember(id: UInt64) async throws -> MasterMember
    /// Removes a member (a removed leader steps down).
    func removeMember(id: UInt64) async throws
    /// A backup file of the whole store (`ClusterBackup.encoded`), consistent as of the call.
    func backupFile() async throws -> [UInt8]
}

extension MembershipSource {
    public func backupFile() async throws -> [UInt8] {
        throw APIError(status: 501, code: "not_supported", message: "this master takes no backups")
    }
}

/// One master as `/api/v1/cluster/members` shows it.
struct MemberView: Encodable, Sendable {
    var id: UInt64
    var name: String
    var rpc_address: String
    var api_address: String
    var etcd_address: String
    var learner: Bool

    init(_ m: MasterMember) {
        id = m.id
        name = m.name
        rpc_address = m.rpcAddress
        api_address = m.apiAddress
        etcd_address = m.etcdAddress
        learner = m.isLearner
    }
}

struct MemberListView: Encodable, Sendable {
    var cluster_id: String
    var members: [MemberView]
}

/// What the REST API accepts as an address: `host:port` with a DNS name or IPv4 literal and a port
/// 1-65535; the OpenAPI document states the same pattern.
enum MemberFieldPatterns {
    static let port = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    static let hostPort = "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}:\(port)$"
    static let optionalHostPort = "^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,252}:\(port))?$"
    static let name = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

    static func matches(_ text: String, _ pattern: String) -> Bool {
        text.range(of: pattern, options: .regularExpression) != nil
    }
}

extension OrchestratorAPI {
    static let memberFields: Set<String> = ["name", "rpc_address", "api_address", "etcd_address"]

    private func membershipSource() throws -> any MembershipSource {
        guard let membership else {
            throw MembershipError(.invalid, "not_supported", "this master's membership cannot change (with --store etcd, etcd manages it)")
        }
        return membership
    }

    /// `GET /api/v1/cluster/members`.
    func listMembers() async throws -> Response {
        let source = try membershipSource()
        let (clusterID, members) = try await source.listMembers()
        return jsonResponse(MemberListView(cluster_id: clusterID, members: members.map(MemberView.init)), revision: nil)
    }

    /// `POST /api/v1/cluster/members`: 201 with the new learner.
    func addMember(_ request: Request) async throws -> Response {
        let source = try membershipSource()
        let body = try await request.readBody(limit: 16 << 10)
        guard let json = try? JSONSerialization.jsonObject(with: Data(body), options: []) else {
            throw APIError(status: 400, code: "invalid_json", message: "the body is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw APIError(status: 400, code: "invalid_json", message: "the body must be a JSON object")
        }
        if let unknown = object.keys.sorted().first(where: { !Self.memberFields.contains($0) }) {
            throw APIError.invalid(unknown, "unknown field")
        }
        func field(_ key: String) throws(APIError) -> String {
            guard let value = object[key] else { return "" }
            guard let text = value as? String else { throw APIError.invalid(key, "must be a string") }
            return text
        }
        guard object["rpc_address"] != nil else { throw APIError.missing("rpc_address") }
        let rpc = try field("rpc_address"), api = try field("api_address"), etcd = try field("etcd_address")
        let name = try field("name")
        if object["name"] != nil, !MemberFieldPatterns.matches(name, MemberFieldPatterns.name) {
            throw APIError.invalid("name", "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
        guard MemberFieldPatterns.matches(rpc, MemberFieldPatterns.hostPort) else {
            throw APIError.invalid("rpc_address", "must be HOST:PORT (a DNS name or IPv4 address, port 1-65535)")
        }
        for (key, value) in [("api_address", api), ("etcd_address", etcd)] where !MemberFieldPatterns.matches(value, MemberFieldPatterns.optionalHostPort) {
            throw APIError.invalid(key, "must be HOST:PORT (a DNS name or IPv4 address, port 1-65535) or empty")
        }
        let member = try await source.addMember(name: name, rpcAddress: rpc, apiAddress: api, etcdAddress: etcd)
        return jsonResponse(MemberView(member), status: .created, revision: nil,
                            headers: [.location: "/api/v1/cluster/members/\(member.id)"])
    }

    /// `POST /api/v1/cluster/members/{id}/promote`.
    func promoteMember(_ context: APIRequestContext) async throws -> Response {
        let source = try membershipSource()
        let member = try await source.promoteMember(id: try memberID(context))
        return jsonResponse(MemberView(member), revision: nil)
    }

    /// `DELETE /api/v1/cluster/members/{id}`: 204.
    func removeMember(_ context: APIRequestContext) async throws -> Response {
        let source = try membershipSource()
        try await source.removeMember(id: try memberID(context))
        return Response(status: .noContent)
    }

    /// `GET /api/v1/cluster/snapshot`: the backup file, as `etcdctl snapshot save` gets it.
    func snapshot() async throws -> Response {
        guard let membership else { throw APIError(status: 501, code: "not_supported", message: BackupUnavailable().description) }
        let file = try await membership.backupFile()
        return Response(status: .ok,
                        headers: [.contentType: "application/octet-stream",
                                  .contentDisposition: "attachment; filename=\"orchestrator-\(ClusterBackup.checksum(of: file).prefix(12)).db\""],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: file)))
    }

    /// A member id: a positive integer below 2^53 (exact in every JSON number), else 404 as for any
    /// unknown id.
    private func memberID(_ context: APIRequestContext) throws -> UInt64 {
        let text = try pathID(context, kind: "member")
        guard let id = UInt64(text), id > 0, id < (1 << 53) else { throw APIError.notFound("no member \"\(text)\"") }
        return id
    }
}
