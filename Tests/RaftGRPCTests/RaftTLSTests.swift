import ClusterSecurity
import Foundation
import GRPCServing
import Logging
import Raft
import Testing

@testable import RaftGRPC
import TestGate

/// The Raft port under mutual TLS: members talk; a peer without a certificate, with one from
/// another CA, or with a member's certificate speaking as another member, gets nothing through.
@Suite("Raft transport over mutual TLS", .serialized, .heavy, .timeLimit(.minutes(2)))
struct RaftTLSTests {
    /// `tls init` output for masters m1...m3 on 127.0.0.1, under a fresh CA.
    static func cluster(_ label: String) throws -> TLSDirectory {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("raft-tls-\(label)-\(UUID().uuidString.prefix(8))").path
        let requests = try (1...3).map { CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m\($0)"), hosts: ["127.0.0.1"]) }
            + [CertificateRequest(identity: try ClusterIdentity(role: .worker, name: "w"))]
        _ = try TLSInit(directory: path, requests: requests).run()
        return TLSDirectory(path: path)
    }

    /// The transport configuration of a node holding `identity`'s certificate from `directory`.
    static func configuration(_ directory: TLSDirectory, as identity: ClusterIdentity) throws -> GRPCRaftTransport.Configuration {
        let material = try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(identity),
                                       keyFile: directory.key(identity))
        var configuration = testConfiguration()
        configuration.security = GRPCRaftTransport.Security(
            server: try .mutualTLS(material),
            member: { peer in
                guard let peer = peer as? AuthenticatedPeer, peer.identity.role == .master else { return nil }
                return NodeID(peer.identity.name.dropFirst())
            },
            client: material.grpcClientSecurity())
        return configuration
    }

    static func master(_ n: Int) throws -> ClusterIdentity { try ClusterIdentity(role: .master, name: "m\(n)") }

    @Test("members exchange messages over mutual TLS")
    func membersTalk() async throws {
        let tls = try Self.cluster("ok")
        let n1 = try await TestNode(id: 1, configuration: Self.configuration(tls, as: Self.master(1)))
        let n2 = try await TestNode(id: 2, configuration: Self.configuration(tls, as: Self.master(2)))
        n1.connect(to: [n2])
        n2.connect(to: [n1])
        var probe = 0
        try await waitUntilConnected(n2, n1, probe: &probe)
        try await waitUntilConnected(n1, n2, probe: &probe)
        try await n1.stop()
        try await n2.stop()
    }

    @Test("a member's certificate cannot speak for another member; nothing it sends as that member arrives")
    func impersonation() async throws {
        let tls = try Self.cluster("impersonation")
        let n1 = try await TestNode(id: 1, configuration: Self.configuration(tls, as: Self.master(1)))
        // Raft id 3, holding m2's certificate: its stream says raft-from 3 and its messages from 3.
        let impostor = try await TestNode(id: 3, configuration: Self.configuration(tls, as: Self.master(2)))
        // A worker's certificate is from the right CA but is not a member's.
        let worker = try await TestNode(id: 2, configuration: Self.configuration(tls, as: ClusterIdentity(role: .worker, name: "w")))
        impostor.transport.setPeer(1, host: "127.0.0.1", port: n1.port)
        worker.transport.setPeer(1, host: "127.0.0.1", port: n1.port)
        try await eventually("both streams refused") {
            impostor.send(to: 1, 0..<1)
            worker.send(to: 1, 0..<1)
            try await Task.sleep(for: .milliseconds(20))
            return n1.transport.statistics.rejected >= 2
        }
        #expect(n1.inbox.received(from: 3).isEmpty && n1.inbox.received(from: 2).isEmpty)
        #expect(n1.inbox.unreachableCount(3) == 0 && n1.inbox.unreachableCount(2) == 0, "a refused stream's end is no one's")
        try await n1.stop()
        try await impostor.stop()
        try await worker.stop()
    }

    @Test("no certificate, or one from another CA: nothing arrives, while a member's messages do")
    func outsiders() async throws {
        let tls = try Self.cluster("outsiders")
        let other = try Self.cluster("foreign")
        let n1 = try await TestNode(id: 1, configuration: Self.configuration(tls, as: Self.master(1)))
        let plain = try await TestNode(id: 2)
        let foreign = try await TestNode(id: 3, configuration: Self.configuration(other, as: Self.master(3)))
        for node in [plain, foreign] { node.transport.setPeer(1, host: "127.0.0.1", port: n1.port) }
        plain.send(to: 1, 0..<5)
        foreign.send(to: 1, 0..<5)
        // A real member, connected after the outsiders tried: once its messages are in, theirs
        // have had every chance.
        let member = try await TestNode(id: 2, configuration: Self.configuration(tls, as: Self.master(2)))
        member.connect(to: [n1])
        var probe = 100
        try await eventually("outsiders tried and the member got through") {
            plain.send(to: 1, 0..<1)
            foreign.send(to: 1, 0..<1)
            member.send(to: 1, probe..<(probe + 1))
            probe += 1
            try await Task.sleep(for: .milliseconds(20))
            return n1.inbox.received(from: 2).count >= 3
        }
        #expect(n1.inbox.received(from: 2).allSatisfy { $0 >= 100 }, "only the member's messages arrived")
        #expect(n1.inbox.received(from: 3).isEmpty)
        for node in [n1, plain, foreign, member] { try await node.stop() }
    }
}
