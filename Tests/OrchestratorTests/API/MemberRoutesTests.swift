import Foundation
import Hummingbird
import HummingbirdTesting
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// Membership as a master would change it, in memory: one change at a time is modelled by `busy`.
final class FakeMembership: MembershipSource {
    let members = Mutex<[MasterMember]>([
        MasterMember(id: 1, name: "m1", rpcAddress: "127.0.0.1:9090", apiAddress: "127.0.0.1:8080", etcdAddress: "", isLearner: false),
        MasterMember(id: 2, name: "m2", rpcAddress: "127.0.0.1:9091", apiAddress: "127.0.0.1:8081", etcdAddress: "", isLearner: false),
    ])
    /// Set: every change fails as when another is not applied yet.
    let busy = Atomic<Bool>(false)

    private func checkBusy() throws {
        if busy.load(ordering: .relaxed) {
            throw MembershipError(.conflict, "change_in_progress", "another membership change is in progress; try again once it is applied")
        }
    }

    func listMembers() async throws -> (clusterID: String, members: [MasterMember]) {
        ("00000000000000aa", members.withLock { $0 })
    }

    func addMember(name: String, rpcAddress: String, apiAddress: String, etcdAddress: String) async throws -> MasterMember {
        try checkBusy()
        return try members.withLock { list in
            if list.contains(where: { $0.rpcAddress == rpcAddress }) {
                throw MembershipError(.conflict, "member_exists", "taken")
            }
            let m = MasterMember(id: UInt64(list.count + 1), name: name, rpcAddress: rpcAddress, apiAddress: apiAddress,
                                 etcdAddress: etcdAddress, isLearner: true)
            list.append(m)
            return m
        }
    }

    func promoteMember(id: UInt64) async throws -> MasterMember {
        try checkBusy()
        return try members.withLock { list in
            guard let i = list.firstIndex(where: { $0.id == id }) else { throw MembershipError(.notFound, "not_found", "no member with id \(id)") }
            list[i].isLearner = false
            return list[i]
        }
    }

    /// A backup's bytes: every byte value, so a text decoding on the way would show.
    func backupFile() async throws -> [UInt8] { (0..<1024).map { UInt8($0 % 256) } }

    func removeMember(id: UInt64) async throws {
        try checkBusy()
        try members.withLock { list in
            guard let i = list.firstIndex(where: { $0.id == id }) else { throw MembershipError(.notFound, "not_found", "no member with id \(id)") }
            list.remove(at: i)
        }
    }
}

@Suite struct MemberRoutesTests {
    func test(_ membership: FakeMembership?, _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let store = MemoryStore()
        let api = OrchestratorAPI(repository: ClusterRepository(store: store), status: FakeStatus(store: store), logs: FakeLogs(),
                                  membership: membership)
        try await Application(router: api.buildRouter()).test(.router) { try await body($0) }
    }

    func errorCode(_ r: TestResponse) -> String? { (r.json["error"] as? [String: Any])?["code"] as? String }

    @Test("list, add as a learner (201 with Location), promote, remove (204)")
    func lifecycle() async throws {
        let fake = FakeMembership()
        try await test(fake) { client in
            let list = try await client.send(.get, "/api/v1/cluster/members")
            #expect(list.status == .ok)
            #expect(list.json["cluster_id"] as? String == "00000000000000aa")
            #expect((list.json["members"] as? [[String: Any]])?.count == 2)

            let added = try await client.send(.post, "/api/v1/cluster/members",
                                              body: #"{"name":"m3","rpc_address":"host3:9090","api_address":"host3:8080"}"#)
            #expect(added.status == .created)
            #expect(added.json["learner"] as? Bool == true)
            #expect(added.json["id"] as? Int == 3)
            #expect(added.headers[.location] == "/api/v1/cluster/members/3")

            let promoted = try await client.send(.post, "/api/v1/cluster/members/3/promote")
            #expect(promoted.status == .ok)
            #expect(promoted.json["learner"] as? Bool == false)

            let removed = try await client.send(.delete, "/api/v1/cluster/members/3")
            #expect(removed.status == .noContent)
            #expect(fake.members.withLock { $0.map(\.id) } == [1, 2])
        }
    }

    @Test("bad input is 400 naming the field; unknown or malformed ids 404; nothing changes")
    func badInput() async throws {
        let fake = FakeMembership()
        try await test(fake) { client in
            let cases: [(String, String)] = [
                ("{", "invalid_json"),
                ("[]", "invalid_json"),
                (#"{"rpc_address":"h:1","port":2}"#, "invalid_field"),
                (#"{"name":"m9"}"#, "missing_field"),
                (#"{"rpc_address":7}"#, "invalid_field"),
                (#"{"rpc_address":"no-port"}"#, "invalid_field"),
                (#"{"rpc_address":"h:70000"}"#, "invalid_field"),
                (#"{"rpc_address":"h:1","name":"-bad"}"#, "invalid_field"),
                (#"{"rpc_address":"h:1","api_address":"x"}"#, "invalid_field"),
            ]
            for (body, code) in cases {
                let r = try await client.send(.post, "/api/v1/cluster/members", body: body)
                #expect(r.status == .badRequest, "\(body)")
                #expect(errorCode(r) == code, "\(body): \(String(buffer: r.body))")
            }
            for path in ["/api/v1/cluster/members/99/promote", "/api/v1/cluster/members/abc/promote", "/api/v1/cluster/members/0"] {
                let r = try await client.send(path.hasSuffix("promote") ? .post : .delete, path)
                #expect(r.status == .notFound, "\(path)")
                #expect(errorCode(r) == "not_found")
            }
            #expect(fake.members.withLock { $0.count } == 2)
        }
    }

    @Test("409 while another change is in progress, and for an address already a member")
    func conflicts() async throws {
        let fake = FakeMembership()
        try await test(fake) { client in
            let taken = try await client.send(.post, "/api/v1/cluster/members", body: #"{"rpc_address":"127.0.0.1:9090"}"#)
            #expect(taken.status == .conflict)
            #expect(errorCode(taken) == "member_exists")
            fake.busy.store(true, ordering: .relaxed)
            let busy = try await client.send(.post, "/api/v1/cluster/members", body: #"{"rpc_address":"h:1"}"#)
            #expect(busy.status == .conflict)
            #expect(errorCode(busy) == "change_in_progress")
            #expect(try await client.send(.delete, "/api/v1/cluster/members/2").status == .conflict)
        }
    }

    @Test("without a membership (etcd store) the endpoints answer 400 not_supported")
    func notSupported() async throws {
        try await test(nil) { client in
            let r = try await client.send(.get, "/api/v1/cluster/members")
            #expect(r.status == .badRequest)
            #expect(errorCode(r) == "not_supported")
        }
    }

    @Test("GET /cluster/snapshot answers the backup's bytes as they are, as a download; without a store of its own 501 not_supported")
    func snapshot() async throws {
        try await test(FakeMembership()) { client in
            let r = try await client.send(.get, "/api/v1/cluster/snapshot")
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/octet-stream")
            #expect(r.headers[.contentDisposition]?.hasPrefix("attachment; filename=\"orchestrator-") == true)
            #expect(Array(buffer: r.body) == (0..<1024).map { UInt8($0 % 256) })
        }
        try await test(nil) { client in
            let r = try await client.send(.get, "/api/v1/cluster/snapshot")
            #expect(r.status == .notImplemented)
            #expect(errorCode(r) == "not_supported")
        }
    }
}
