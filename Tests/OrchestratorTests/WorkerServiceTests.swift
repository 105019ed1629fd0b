import ClusterModel
import ClusterProto
import GRPCCore
import Logging
import Store
import Testing
@testable import Orchestrator

@Suite struct WorkerServiceTests {
    static func service(token: String?) -> (WorkerService, ClusterRepository) {
        let repo = ClusterRepository(store: MemoryStore())
        return (WorkerService(repository: repo, joinToken: token, now: { 1_000 }, logger: Logger(label: "test")), repo)
    }

    static func request(token: String, id: String = "") -> Orchestrator_V1_JoinRequest {
        .with {
            $0.joinToken = token
            $0.nodeID = id
            $0.hostname = "Host_1.example"
            $0.address = "127.0.0.1:9091"
            $0.cpuMillicores = 2000
            $0.memoryMb = 4096
        }
    }

    @Test("a wrong join token is refused with permission denied and nothing is stored")
    func wrongToken() async throws {
        let (service, repo) = Self.service(token: "secret")
        await #expect(throws: RPCError.self) {
            _ = try await service.join(request: Self.request(token: "guess"), context: .testing)
        }
        do {
            _ = try await service.join(request: Self.request(token: "guess"), context: .testing)
        } catch let error as RPCError {
            #expect(error.code == .permissionDenied)
            #expect(error.message.contains("join token"))
        }
        #expect(try await repo.nodes().isEmpty)
    }

    @Test("a join tells the worker its heartbeat interval and its lease")
    func joinTellsTheLease() async throws {
        let repo = ClusterRepository(store: MemoryStore())
        let service = WorkerService(repository: repo, joinToken: "secret", heartbeatInterval: .milliseconds(300), lease: .milliseconds(2_400),
                                    now: { 1_000 }, logger: Logger(label: "test"))
        let joined = try await service.join(request: Self.request(token: "secret", id: "w-8"), context: .testing)
        #expect(joined.heartbeatIntervalMs == 300)
        #expect(joined.leaseMs == 2_400)
    }

    @Test("the right token joins; a new id comes from the host name; the worker's own id is kept; bad ids and addresses are refused")
    func joins() async throws {
        let (service, repo) = Self.service(token: "secret")
        let fresh = try await service.join(request: Self.request(token: "secret"), context: .testing)
        #expect(fresh.nodeID.hasPrefix("host-1-example-"))
        let kept = try await service.join(request: Self.request(token: "secret", id: "w-7"), context: .testing)
        #expect(kept.nodeID == "w-7" && kept.heartbeatIntervalMs == 1000)
        #expect(kept.leaseMs == 0, "no lease unless the master is given one")
        #expect(try await repo.node("w-7").info.capacity == Resources(cpu: 2000, memory: 4096))
        #expect(try await repo.heartbeats()["w-7"] == 1_000)
        await #expect(throws: RPCError.self) {
            _ = try await service.join(request: Self.request(token: "secret", id: "Bad ID"), context: .testing)
        }
        var noAddress = Self.request(token: "secret")
        noAddress.address = "nowhere"
        await #expect(throws: RPCError.self) { _ = try await service.join(request: noAddress, context: .testing) }
    }
}

extension ServerContext {
    static var testing: ServerContext {
        ServerContext(descriptor: MethodDescriptor(fullyQualifiedService: "orchestrator.v1.Workers", method: "Join"),
                      remotePeer: "in-process", localPeer: "in-process", cancellation: .init())
    }
}
