import ClusterModel
import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
@testable import Orchestrator
import Raft
import Store
import Synchronization
import Testing

/// `ForwardClient` against a real `Masters` gRPC service: concurrent writes through a follower
/// share ForwardBatch calls, each write gets its own answer or Raft error, and a leader that does
/// not know ForwardBatch (an older master) still gets every write, one Forward each.
@Suite struct ForwardClientTests {
    /// Counts calls by method name.
    final class CallCounter: ServerInterceptor {
        let counts = Mutex<[String: Int]>([:])
        func intercept<Input: Sendable, Output: Sendable>(
            request: StreamingServerRequest<Input>, context: ServerContext,
            next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
        ) async throws -> StreamingServerResponse<Output> {
            counts.withLock { $0[context.descriptor.method, default: 0] += 1 }
            return try await next(request, context)
        }
        func count(_ method: String) -> Int { counts.withLock { $0[method, default: 0] } }
    }

    /// The leader's side: a put answers with its key's length as the revision after a short wait
    /// (so writes overlap); a put of "refuse" fails as a leader that stepped down would.
    static let handle: @Sendable (Command) async throws -> Response = { command in
        guard case .put(let put) = command else { throw RaftNodeError.rejected("only puts here") }
        try await Task.sleep(for: .milliseconds(3))
        if put.key == Array("refuse".utf8) { throw RaftNodeError.proposalDropped }
        return .put(PutResponse(revision: Int64(put.key.count), prevKV: nil))
    }

    /// Serves the Masters service (without ForwardBatch when `old`) and runs `body` with a client
    /// pointed at it, the call counter and the server's port.
    static func withLeader(old: Bool, _ body: (ForwardClient, CallCounter, Int) async throws -> Void) async throws {
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
        var router = RPCRouter<HTTP2ServerTransport.Posix>()
        ForwardService(authorization: .unauthenticated, handle: handle, membership: MembershipHandler()).registerMethods(with: &router)
        if old { _ = router.removeHandler(forMethod: Orchestrator_V1_Masters.Method.ForwardBatch.descriptor) }
        let counter = CallCounter()
        router.registerInterceptors(pipeline: [.apply(counter, to: .all)])
        let server = GRPCServer(transport: transport, router: router)
        let serving = Task { try await server.serve() }
        let port = try #require(try await transport.listeningAddress.ipv4?.port)
        let clients = PeerClients()
        // A generous deadline: in a full test run's first seconds every suite starts at once on
        // 2 cores, and a call can wait longer than the masters' 10 s for CPU.
        let client = ForwardClient(clients: clients, callTimeout: .seconds(60), address: { _ in HostPort(host: "127.0.0.1", port: port) })
        do {
            try await body(client, counter, port)
        } catch {
            clients.shutdown()
            server.beginGracefulShutdown()
            throw error
        }
        clients.shutdown()
        server.beginGracefulShutdown()
        try await serving.value
    }

    static func put(_ key: String) -> Command { .put(PutRequest(key: Array(key.utf8), value: [1])) }

    /// `count` concurrent writes; each answer checked against its own key.
    static func writeConcurrently(_ client: ForwardClient, count: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                group.addTask {
                    let key = "key-" + String(repeating: "x", count: i % 11)
                    let response = try await client.forward(to: 1, put(key))
                    #expect(response == .put(PutResponse(revision: Int64(key.utf8.count), prevKV: nil)))
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("200 concurrent forwarded writes share far fewer ForwardBatch calls; a refused write fails alone")
    func batches() async throws {
        try await Self.withLeader(old: false) { client, counter, _ in
            try await Self.writeConcurrently(client, count: 200)
            let batches = counter.count("ForwardBatch"), singles = counter.count("Forward")
            #expect(batches + singles < 100, "200 writes took \(batches) ForwardBatch and \(singles) Forward calls")
            #expect(batches > 0)
            // One write the leader refuses among others: only it fails, with the Raft error the
            // store retries on.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await #expect(throws: RaftNodeError.proposalDropped) { _ = try await client.forward(to: 1, Self.put("refuse")) }
                }
                for _ in 0..<20 { group.addTask { _ = try await client.forward(to: 1, Self.put("fine")) } }
                try await group.waitForAll()
            }
        }
    }

    @Test("a leader without ForwardBatch (an older master) gets every write as its own Forward")
    func olderLeader() async throws {
        try await Self.withLeader(old: true) { client, counter, _ in
            // Fewer than above: each is a call of its own.
            try await Self.writeConcurrently(client, count: 60)
            #expect(counter.count("Forward") == 60)
        }
    }

    @Test("the leader refuses a ForwardBatch call with more commands than its cap, and serves one at the cap")
    func batchCap() async throws {
        try await Self.withLeader(old: false) { _, _, port in
            try await withGRPCClient(transport: try HTTP2ClientTransport.Posix(
                target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext, config: .defaults)) { grpc in
                let stub = Orchestrator_V1_Masters.Client(wrapping: grpc)
                var options = CallOptions.defaults
                options.timeout = .seconds(60)
                let command = Data(Self.put("k").encoded())
                let cap = ForwardService.maxBatchCommands
                await #expect {
                    _ = try await stub.forwardBatch(.with { $0.commands = Array(repeating: command, count: cap + 1) }, options: options)
                } throws: { ($0 as? RPCError)?.code == .invalidArgument }
                let served = try await stub.forwardBatch(.with { $0.commands = Array(repeating: command, count: cap) }, options: options)
                #expect(served.results.count == cap)
                #expect(served.results.allSatisfy { $0.raftError.isEmpty })
            }
        }
    }
}
