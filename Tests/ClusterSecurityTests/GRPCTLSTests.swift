import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing
import X509
@testable import ClusterSecurity

/// Raw bytes in and out: no protobuf needed to call a method.
private struct Bytes: MessageSerializer, MessageDeserializer {
    func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
    func deserialize<B: GRPCContiguousBytes>(_ bytes: B) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

/// Answers with the caller's identity URI, as `ClusterPeer.identity(in:)` finds it.
private let whoAmI = MethodDescriptor(fullyQualifiedService: "test.Peer", method: "WhoAmI")

@Suite struct GRPCTLSTests {
    @Test("grpc-swift over mutual TLS from the same files: the handler sees the caller's identity; a foreign certificate gets no answer")
    func grpcMutualTLS() async throws {
        try await withTemporaryDirectory { path in
            let directory = try makeCluster(in: path)
            let other = try makeCluster(in: path + "/other")
            let m1 = try material(directory, .master, "m1")
            let w1 = try material(directory, .worker, "w1")
            let intruder = try material(other, .worker, "w1")

            let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: m1.grpcServerSecurity())
            var router = RPCRouter<HTTP2ServerTransport.Posix>()
            router.registerHandler(forMethod: whoAmI, deserializer: Bytes(), serializer: Bytes()) { request, context in
                for try await _ in request.messages {}
                let identity = try ClusterPeer.identity(in: context)
                return StreamingServerResponse(single: ServerResponse(message: Array(identity.uri.utf8)))
            }
            let server = GRPCServer(transport: transport, router: router)
            let serving = Task { try await server.serve() }
            let port = try #require(try await transport.listeningAddress.ipv4?.port)

            func call(_ security: HTTP2ClientTransport.Posix.TransportSecurity, timeout: Duration) async throws -> String {
                let client = GRPCClient(transport: try HTTP2ClientTransport.Posix(
                    target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: security, config: .defaults))
                let connections = Task { try await client.runConnections() }
                defer {
                    // Close our connections before the server stops (see StoppableGRPCServer).
                    client.beginGracefulShutdown()
                }
                var options = CallOptions.defaults
                options.timeout = timeout
                let answer = try await client.unary(
                    request: ClientRequest(message: []), descriptor: whoAmI, serializer: Bytes(), deserializer: Bytes(), options: options
                ) { try $0.message }
                client.beginGracefulShutdown()
                try? await connections.value
                return String(decoding: answer, as: UTF8.self)
            }

            // Generous for the call that must succeed: in a full test run's first seconds every
            // suite starts at once on 2 cores, and a handshake and a call took over 10 s there.
            #expect(try await call(w1.grpcClientSecurity(), timeout: .seconds(60)) == "orch://worker/w1")
            await #expect(throws: RPCError.self) { try await call(intruder.grpcClientSecurity(), timeout: .seconds(10)) }
            server.beginGracefulShutdown()
            try await serving.value
        }
    }

    @Test("ClusterPeer.identity(in:) reads our transport's AuthenticatedPeer and grpc-swift-nio-transport's Posix context")
    func serverContext() throws {
        let ca = try CertificateAuthority.create()
        let w1 = try ClusterIdentity(role: .worker, name: "w1")
        func context(_ specific: (any ServerContext.TransportSpecific)?) -> ServerContext {
            var context = ServerContext(descriptor: whoAmI, remotePeer: "ipv4:127.0.0.1:1", localPeer: "ipv4:127.0.0.1:2",
                                        cancellation: ServerContext.RPCCancellationHandle())
            context.transportSpecific = specific
            return context
        }
        #expect(try ClusterPeer.identity(in: context(AuthenticatedPeer(identity: w1))) == w1)
        var posix = HTTP2ServerTransport.Posix.Context()
        posix.peerCertificate = try ca.issue(for: w1).certificate
        #expect(try ClusterPeer.identity(in: context(posix)) == w1)
        #expect(throws: PeerIdentityError.noPeerCertificate) { try ClusterPeer.identity(in: context(HTTP2ServerTransport.Posix.Context())) }
        #expect(throws: PeerIdentityError.noTransportInformation) { try ClusterPeer.identity(in: context(nil)) }
    }
}
