import ClusterModel
import ClusterProto
import GRPCCore
import Logging
import Store
import Synchronization
import Testing
@testable import Orchestrator

/// Who may act for a node: the admission rules as a table, then each attack against a real
/// `WorkerService` on a store, with nothing in the store changed by a refused call.
@Suite struct NodeCredentialTests {
    static let issued = NodeCredential(secret: "the-node-secret")

    @Test("admission: new ids need the token; registered ids need their own credential; legacy records are adopted with the token", arguments: [
        // (stored digest, presented, token accepted, expected)
        (nil as String??, "", true, NodeAdmission.admitIssuing),
        (nil, "", false, .refuse("join token does not match this cluster's (--join-token)")),
        (.some(nil), "", true, .admitIssuing),
        (.some(nil), "anything", false, .refuse("join token does not match this cluster's (--join-token)")),
        (.some(issued.digest), issued.secret, false, .admitKeeping),
        (.some(issued.digest), issued.secret, true, .admitKeeping),
    ])
    func admission(stored: String??, presented: String, token: Bool, expected: NodeAdmission) {
        #expect(NodeAdmission.decide(id: "w1", storedDigest: stored, presented: presented, tokenAccepted: token) == expected)
    }

    @Test("a registered id is refused with the token alone, with a wrong credential, and says what to do")
    func registeredIDNeedsItsCredential() {
        for presented in ["", "stolen-guess"] {
            guard case .refuse(let why) = NodeAdmission.decide(id: "w1", storedDigest: .some(Self.issued.digest), presented: presented, tokenAccepted: true) else {
                Issue.record("admitted with \(presented.isEmpty ? "no" : "a wrong") credential")
                continue
            }
            #expect(why.contains("w1") && why.contains("--data-dir"))
        }
    }

    @Test("credentials are 32 random bytes, distinct, and only their digest matches")
    func issuance() {
        let a = NodeCredential.issue(), b = NodeCredential.issue()
        #expect(a != b && a.secret.count == 43)
        #expect(NodeCredential.matches(presented: a.secret, stored: a.digest))
        #expect(!NodeCredential.matches(presented: b.secret, stored: a.digest))
        #expect(!NodeCredential.matches(presented: "", stored: a.digest))
        #expect(a.digest.count == 64 && !a.digest.contains(a.secret))
    }

    // MARK: Attacks on the service

    static func joined(_ service: WorkerService, id: String) async throws -> String {
        let reply = try await service.join(request: WorkerServiceTests.request(token: "secret", id: id), context: .testing)
        #expect(!reply.nodeCredential.isEmpty)
        return reply.nodeCredential
    }

    static func expectDenied(_ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("the call was allowed")
        } catch let error as RPCError {
            #expect(error.code == .permissionDenied, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("a stolen join token cannot re-join as an existing node; its own credential can, and keeps it")
    func stolenTokenRejoin() async throws {
        let (service, repo) = WorkerServiceTests.service(token: "secret")
        let credential = try await Self.joined(service, id: "w1")
        let before = try await repo.node("w1")
        var hijack = WorkerServiceTests.request(token: "secret", id: "w1")
        hijack.address = "10.6.6.6:9091"
        await Self.expectDenied { _ = try await service.join(request: hijack, context: .testing) }
        hijack.nodeCredential = "forged"
        await Self.expectDenied { _ = try await service.join(request: hijack, context: .testing) }
        let after = try await repo.node("w1")
        #expect(after.address == before.address && after.revision == before.revision)

        var rejoin = WorkerServiceTests.request(token: "rotated-token", id: "w1")
        rejoin.nodeCredential = credential
        let again = try await service.join(request: rejoin, context: .testing)
        #expect(again.nodeCredential == credential)
        #expect(try await repo.node("w1").credentialDigest == NodeCredential(secret: credential).digest)
    }

    @Test("a worker cannot heartbeat, report or read assignments for another node")
    func actingForAnotherNode() async throws {
        let (service, repo) = WorkerServiceTests.service(token: "secret")
        let victim = try await Self.joined(service, id: "victim")
        let mine = try await Self.joined(service, id: "attacker")
        _ = victim
        let task = try await repo.create(TaskRecord(id: "t1", spec: TaskSpec(name: "t", image: "alpine"), now: 1))
        let placement = PlacementRecord(node: "victim", score: 1, algorithm: .binPacking, filters: [])
        let (placed, _) = try await repo.assign(task, to: try await repo.node("victim"), placement: placement, now: 2)
        let heartbeatsBefore = try await repo.heartbeats()

        for credential in ["", mine, "forged"] {
            await Self.expectDenied {
                _ = try await service.heartbeat(request: .with { $0.nodeID = "victim"; $0.nodeCredential = credential }, context: .testing)
            }
            await Self.expectDenied {
                _ = try await service.reportStatus(request: .with {
                    $0.nodeID = "victim"; $0.nodeCredential = credential
                    $0.taskID = placed.id; $0.epoch = placed.epoch; $0.state = .completed
                }, context: .testing)
            }
        }
        #expect(try await repo.heartbeats() == heartbeatsBefore)
        #expect(try await repo.task(placed.id).state == .assigned)

        // The victim's assignment stream (its task specs, env included) is not readable either.
        let received = Collected()
        for credential in ["", mine] {
            await Self.expectDenied {
                try await service.assignments(request: .with { $0.nodeID = "victim"; $0.nodeCredential = credential },
                                              response: RPCWriter(wrapping: received), context: .testing)
            }
        }
        #expect(received.count == 0)
    }
}

/// An assignment stream's writer that only counts what it is given.
final class Collected: RPCWriterProtocol, Sendable {
    private let written = Mutex(0)
    var count: Int { written.withLock { $0 } }
    func write(_ element: Orchestrator_V1_AssignmentSet) async throws { written.withLock { $0 += 1 } }
    func write(contentsOf elements: some Sequence<Orchestrator_V1_AssignmentSet>) async throws {
        for e in elements { try await write(e) }
    }
}
