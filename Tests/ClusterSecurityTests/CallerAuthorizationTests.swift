import ClusterSecurity
import GRPCCore
import Testing

/// The role check every internal service applies, on contexts as the transports fill them.
@Suite struct CallerAuthorizationTests {
    static func context(_ identity: ClusterIdentity?) -> ServerContext {
        var context = ServerContext(descriptor: MethodDescriptor(fullyQualifiedService: "orchestrator.v1.Masters", method: "Forward"),
                                    remotePeer: "ipv4:127.0.0.1:1", localPeer: "ipv4:127.0.0.1:2", cancellation: .init())
        context.transportSpecific = identity.map { AuthenticatedPeer(identity: $0) }
        return context
    }

    static func code(_ body: () throws -> Void) -> RPCError.Code? {
        do {
            try body()
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return .unknown
        }
    }

    @Test("with TLS: the listed roles pass with their identity; other roles are denied; no certificate is unauthenticated")
    func roles() throws {
        let master = try ClusterIdentity(role: .master, name: "m1")
        let worker = try ClusterIdentity(role: .worker, name: "w")
        let client = try ClusterIdentity(role: .client, name: "admin")
        let etcd = try ClusterIdentity(role: .etcd, name: "etcd1")
        let tls = CallerAuthorization.mutualTLS
        #expect(try tls.caller(Self.context(master), mustBe: [.master]) == master)
        #expect(try tls.caller(Self.context(worker), mustBe: [.worker, .master]) == worker)
        #expect(Self.code { try tls.caller(Self.context(worker), mustBe: [.master]) } == .permissionDenied)
        #expect(Self.code { try tls.caller(Self.context(client), mustBe: [.master]) } == .permissionDenied)
        #expect(Self.code { try tls.caller(Self.context(client), mustBe: [.worker]) } == .permissionDenied)
        #expect(Self.code { try tls.caller(Self.context(nil), mustBe: [.master]) } == .unauthenticated)
        // An etcd member's certificate is for etcd's ports: it makes no call of ours.
        #expect(Self.code { try tls.caller(Self.context(etcd), mustBe: [.master]) } == .permissionDenied)
        #expect(Self.code { try tls.caller(Self.context(etcd), mustBe: [.worker]) } == .permissionDenied)
    }

    @Test("without TLS there is nothing to check: every caller passes, with no identity")
    func plain() throws {
        #expect(try CallerAuthorization.unauthenticated.caller(Self.context(nil), mustBe: [.master]) == nil)
    }
}
