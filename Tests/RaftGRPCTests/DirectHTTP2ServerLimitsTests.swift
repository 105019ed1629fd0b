import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Logging
import NIOCore
import Raft
import RaftGRPC
import Synchronization
import Testing

/// Raw bytes in and out.
private struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
    func deserialize<B: GRPCContiguousBytes>(_ bytes: B) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

/// A value the fixture's methods and the test share.
private final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

/// What a fake `peerIdentity` hook says a connection authenticated as.
private struct FakeIdentity: ServerContext.TransportSpecific {
    var name: String
}

private let who = MethodDescriptor(fullyQualifiedService: "limits.Test", method: "Who")
private let gate = MethodDescriptor(fullyQualifiedService: "limits.Test", method: "Gate")
private let sinkPath = "/limits.Test/Sink"
/// gRPC's RESOURCE_EXHAUSTED, and HTTP/2's ENHANCE_YOUR_CALM and NO_ERROR.
private let resourceExhausted = "8"
private let enhanceYourCalm = 0xb

/// A transport on a free loopback port: `Who` (fast path) and `Gate` (routed) answer with the
/// connection's identity name; `Gate` also records how many of its calls ran at once; the sink
/// takes one call per connection and records each opening's identity.
private final class LimitsFixture: Sendable {
    let transport: DirectHTTP2ServerTransport
    let serving: Task<Void, any Error>
    let port: Int
    /// `Gate` calls running now, and the most seen at once.
    let gateCalls = Shared<(now: Int, peak: Int)>((0, 0))
    let sinkOpenings = Shared<[String]>([])

    init(_ configure: (inout DirectHTTP2ServerTransport.Configuration) -> Void = { _ in }) async throws {
        var config = DirectHTTP2ServerTransport.Configuration()
        config.unaryMethods["/limits.Test/Who"] = GRPCUnaryMethod { _, context in
            Array(((context.transportSpecific as? FakeIdentity)?.name ?? "-").utf8)
        }
        let openings = sinkOpenings
        config.sinkMethods[sinkPath] = GRPCSinkMethod(maxCallsPerConnection: 1) { _, _, identity in
            openings.value.withLock { $0.append((identity as? FakeIdentity)?.name ?? "-") }
            return GRPCSinkCall(receive: { _ in }, end: { _ in })
        }
        configure(&config)
        let transport = DirectHTTP2ServerTransport(host: "127.0.0.1", port: 0, configuration: config)
        var router = RPCRouter<DirectHTTP2ServerTransport>()
        let gateCalls = self.gateCalls
        router.registerHandler(forMethod: gate, deserializer: RawBytes(), serializer: RawBytes()) { request, context in
            for try await _ in request.messages {}
            gateCalls.value.withLock { calls in
                calls.now += 1
                calls.peak = max(calls.peak, calls.now)
            }
            // Held briefly so that calls overlap; nothing waits on this for a condition.
            try await Task.sleep(for: .milliseconds(20))
            gateCalls.value.withLock { $0.now -= 1 }
            let name = (context.transportSpecific as? FakeIdentity)?.name ?? "-"
            return StreamingServerResponse(single: ServerResponse(message: Array(name.utf8)))
        }
        self.transport = transport
        self.serving = Task { try await GRPCServer(transport: transport, router: router).serve() }
        self.port = try await transport.listeningPort
    }

    /// Runs `body` with a grpc-swift client (one connection) to the fixture.
    func withClient(_ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Void) async throws {
        try await withGRPCClient(transport: try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext, config: .defaults)) { client in
            try await body(client)
        }
    }

    func call(_ client: GRPCClient<HTTP2ClientTransport.Posix>, _ method: MethodDescriptor) async throws -> String {
        try await client.unary(request: ClientRequest(message: []), descriptor: method, serializer: RawBytes(),
                               deserializer: RawBytes(), options: .defaults) { String(decoding: try $0.message, as: UTF8.self) }
    }

    func stop() async {
        serving.cancel()
        _ = try? await serving.value
    }
}

@Suite("DirectHTTP2ServerTransport: limits and peer identity")
struct DirectHTTP2ServerLimitsTests {
    @Test("connections beyond maxConnections are closed at accept; the open ones keep working")
    func connectionFlood() async throws {
        let fixture = try await LimitsFixture { $0.maxConnections = 3 }
        defer { Task { await fixture.stop() } }
        try await fixture.withClient { client in
            #expect(try await fixture.call(client, who) == "-")
            var raw: [RawHTTP2Connection] = []
            for _ in 0..<12 { raw.append(try await RawHTTP2Connection.connect(port: fixture.port)) }
            // One connection is the client's: two raw ones fit, ten are closed.
            try await eventually("the extra connections are closed") {
                raw.filter { !$0.isOpen }.count == 10 && fixture.transport.statistics.refusedConnections == 10
            }
            #expect(fixture.transport.statistics.openConnections == 3)
            #expect(try await fixture.call(client, who) == "-", "the connection that was there still serves")
            for connection in raw { await connection.close() }
            try await eventually("the raw connections are gone") { fixture.transport.statistics.openConnections == 1 }
        }
        // Room again: a new client connects and is served.
        try await fixture.withClient { client in
            let answer = try await fixture.call(client, gate)
            #expect(answer == "-")
        }
    }

    @Test("maxConcurrentStreams is advertised and holds: a client's burst of calls runs at most that many at once")
    func streamFlood() async throws {
        let fixture = try await LimitsFixture { $0.maxConcurrentStreams = 4 }
        defer { Task { await fixture.stop() } }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        try await eventually("the server's SETTINGS") { raw.events.contains(.settings(maxConcurrentStreams: 4)) }
        await raw.close()
        try await fixture.withClient { client in
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<24 { group.addTask { try await fixture.call(client, gate) } }
                for try await answer in group { #expect(answer == "-") }
            }
        }
        #expect(fixture.gateCalls.value.withLock { $0.peak } <= 4)
    }

    @Test("a partial message held open past the server's budget: the stream is reset, the budget given back")
    func partialMessageOverServerBudget() async throws {
        let fixture = try await LimitsFixture {
            $0.maxRequestMessageBytes = 32 << 20
            $0.maxBufferedBytes = 3 << 20
        }
        defer { Task { await fixture.stop() } }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        defer { Task { await raw.close() } }
        try await raw.open(1, path: sinkPath)
        // 16 MiB declared, 2 MiB sent: held, and counted (over 1 MiB), within the budget.
        try await raw.sendMessage(on: 1, declared: 16 << 20, sent: 2 << 20)
        try await eventually("2 MiB held") { fixture.transport.statistics.bufferedBytes >= 2 << 20 }
        #expect(fixture.transport.statistics.refusedStreams == 0)
        // 2 MiB more passes the 3 MiB budget.
        try await raw.sendMessage(on: 1, declared: 16 << 20, sent: 2 << 20)
        try await eventually("the stream is refused and reset") {
            raw.events.contains(.headers(stream: 1, grpcStatus: resourceExhausted, endStream: true))
                && raw.events.contains(.reset(stream: 1, code: 0))
        }
        try await eventually("the budget is given back") { fixture.transport.statistics.bufferedBytes == 0 }
        #expect(fixture.transport.statistics.bufferedBytes <= 3 << 20)
        #expect(fixture.transport.statistics.refusedStreams == 1)
        // The connection carries on: a new sink call on it is accepted (the slot was freed too).
        try await raw.open(3, path: sinkPath)
        try await eventually("stream 3 is answered") {
            raw.events.contains(.headers(stream: 3, grpcStatus: nil, endStream: false))
        }
        #expect(raw.isOpen)
    }

    @Test("partial messages past the connection's budget: GOAWAY (ENHANCE_YOUR_CALM) and the connection closes")
    func partialMessageOverConnectionBudget() async throws {
        let fixture = try await LimitsFixture {
            $0.maxRequestMessageBytes = 32 << 20
            $0.maxBufferedBytesPerConnection = 2 << 20
        }
        defer { Task { await fixture.stop() } }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        try await raw.open(1, path: sinkPath)
        try await raw.sendMessage(on: 1, declared: 16 << 20, sent: 3 << 20)
        try await eventually("the connection is closed") { !raw.isOpen }
        #expect(raw.events.contains(.goAway(code: enhanceYourCalm)))
        #expect(fixture.transport.statistics.calmedConnections == 1)
        try await eventually("the budget is given back") {
            fixture.transport.statistics.bufferedBytes == 0 && fixture.transport.statistics.openConnections == 0
        }
        // Others are not affected.
        try await fixture.withClient { client in
            let answer = try await fixture.call(client, who)
            #expect(answer == "-")
        }
    }

    @Test("a second sink call on one connection is refused with RESOURCE_EXHAUSTED; one on another connection is not")
    func oneSinkPerConnection() async throws {
        let fixture = try await LimitsFixture()
        defer { Task { await fixture.stop() } }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        defer { Task { await raw.close() } }
        try await raw.open(1, path: sinkPath)
        try await raw.open(3, path: sinkPath)
        try await eventually("stream 3 refused") {
            raw.events.contains(.headers(stream: 3, grpcStatus: resourceExhausted, endStream: true))
        }
        #expect(raw.events.contains(.headers(stream: 1, grpcStatus: nil, endStream: false)))
        #expect(fixture.transport.statistics.refusedStreams == 1)
        let other = try await RawHTTP2Connection.connect(port: fixture.port)
        defer { Task { await other.close() } }
        try await other.open(1, path: sinkPath)
        try await eventually("the other connection's sink is accepted") {
            other.events.contains(.headers(stream: 1, grpcStatus: nil, endStream: false))
        }
        // Once the first call ends, its slot is free again.
        try await raw.end(1)
        try await eventually("stream 1 ends") { raw.events.contains(.headers(stream: 1, grpcStatus: "0", endStream: true)) }
        try await raw.open(5, path: sinkPath)
        try await eventually("stream 5 is accepted") {
            raw.events.contains(.headers(stream: 5, grpcStatus: nil, endStream: false))
        }
    }

    @Test("the peer identity hook runs once per connection; its value reaches fast-path, routed and sink calls")
    func peerIdentity() async throws {
        let resolutions = Atomic<Int>(0)
        let fixture = try await LimitsFixture {
            $0.peerIdentity = { channel in
                let n = resolutions.add(1, ordering: .relaxed).newValue
                // Answers later, as a TLS handshake would: frames that arrive meanwhile must wait.
                return channel.eventLoop.scheduleTask(in: .milliseconds(30)) {
                    FakeIdentity(name: "peer-\(n)") as (any ServerContext.TransportSpecific)?
                }.futureResult
            }
        }
        defer { Task { await fixture.stop() } }
        try await fixture.withClient { client in
            let fast = try await fixture.call(client, who)
            let routed = try await fixture.call(client, gate)
            #expect(fast == "peer-1" && routed == "peer-1")
        }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        defer { Task { await raw.close() } }
        try await raw.open(1, path: sinkPath)
        try await eventually("the sink opened") { fixture.sinkOpenings.value.withLock { $0 } == ["peer-2"] }
        #expect(resolutions.load(ordering: .relaxed) == 2)
    }

    @Test("a peer identity hook that fails closes the connection before any call runs")
    func peerIdentityRefused() async throws {
        struct NotAuthenticated: Error {}
        let fixture = try await LimitsFixture {
            $0.peerIdentity = { channel in channel.eventLoop.makeFailedFuture(NotAuthenticated()) }
        }
        defer { Task { await fixture.stop() } }
        let raw = try await RawHTTP2Connection.connect(port: fixture.port)
        try await raw.open(1, path: sinkPath)
        try await eventually("the connection is closed") { !raw.isOpen }
        #expect(fixture.sinkOpenings.value.withLock { $0 }.isEmpty)
    }

    @Test("Raft's port takes one inbound stream per connection: a second is refused")
    func raftOneStreamPerConnection() async throws {
        var logger = Logger(label: "raft-limits-test")
        logger.logLevel = .critical
        let transport = GRPCRaftTransport(id: 1, listen: ("127.0.0.1", 0), peers: [:], logger: logger)
        let running = Task { try await transport.run(onReceive: { _ in }, onUnreachable: { _ in }) }
        defer { running.cancel() }
        let raw = try await RawHTTP2Connection.connect(port: try await transport.listeningPort)
        defer { Task { await raw.close() } }
        let path = "/" + Raft_V1_RaftTransport.Method.Stream.descriptor.fullyQualifiedMethod
        try await raw.open(1, path: path, metadata: [("raft-from", "2")])
        try await eventually("the first stream is greeted") {
            raw.events.contains { if case .data(stream: 1, _) = $0 { true } else { false } }
        }
        try await raw.open(3, path: path, metadata: [("raft-from", "2")])
        try await eventually("the second is refused") {
            raw.events.contains(.headers(stream: 3, grpcStatus: resourceExhausted, endStream: true))
        }
    }
}
