import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing
import Synchronization
import TestGate
import Testing

/// Raw bytes in and out: the tests drive the transport without protobuf.
private struct Bytes: MessageSerializer, MessageDeserializer {
    func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
    func deserialize<B: GRPCContiguousBytes>(_ bytes: B) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

private let echo = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Echo")
private let chat = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Chat")
private let fail = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Fail")
private let hang = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Hang")
private let fast = MethodDescriptor(fullyQualifiedService: "test.Fast", method: "Reverse")
private let fastFail = MethodDescriptor(fullyQualifiedService: "test.Fast", method: "Fail")
private let unknown = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Nope")
private let collect = MethodDescriptor(fullyQualifiedService: "test.Sink", method: "Collect")
private let spew = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Spew")

/// A server on a free loopback port with a few methods, and a grpc-swift client to it.
private final class Fixture: Sendable {
    let transport: DirectHTTP2ServerTransport
    let serving: Task<Void, any Error>
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let connections: Task<Void, Never>
    /// Hang calls that started, and those that saw their cancellation.
    let started = Counter()
    let cancelled = Counter()
    /// The same for the fast path's slow method.
    let slowStarted = Counter()
    let slowCancelled = Counter()
    /// Messages the spew method has written (its `write` returned).
    let spewWritten = Counter()
    /// What the sink method saw: each message's digest, and how each call ended ("ok" or the code).
    let sink = SinkLog()

    final class SinkLog: Sendable {
        private let state = Mutex<(digests: [[UInt8]], ends: [String])>(([], []))
        func record(digest: [UInt8]) { state.withLock { $0.digests.append(digest) } }
        func record(end: String) { state.withLock { $0.ends.append(end) } }
        var digests: [[UInt8]] { state.withLock { $0.digests } }
        var ends: [String] { state.withLock { $0.ends } }
    }

    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    init(maxRequest: Int = 4 * 1024 * 1024) async throws {
        var config = DirectHTTP2ServerTransport.Configuration()
        config.maxRequestMessageBytes = maxRequest
        config.unaryMethods = [
            "/test.Fast/Reverse": GRPCUnaryMethod { bytes, _ in bytes.reversed() },
            "/test.Fast/Fail": GRPCUnaryMethod { _, _ in throw RPCError(code: .notFound, message: "no such thing: 100% ü") },
        ]
        let (slowStarted, slowCancelled) = (self.slowStarted, self.slowCancelled)
        // Runs until cancelled (at most 30 s), counting both.
        config.unaryMethods["/test.Fast/Slow"] = GRPCUnaryMethod { bytes, _ in
            slowStarted.add()
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                slowCancelled.add()
                throw error
            }
            return bytes
        }
        let sink = self.sink
        // Greets with [1, 2, 3]; refuses calls whose metadata has "refuse".
        config.sinkMethods["/test.Sink/Collect"] = GRPCSinkMethod { metadata, _, _ in
            if metadata[stringValues: "refuse"].first(where: { _ in true }) != nil {
                throw RPCError(code: .permissionDenied, message: "refused by the test")
            }
            return GRPCSinkCall(
                greeting: [[1, 2, 3]],
                receive: { message in sink.record(digest: Fixture.digest(message)) },
                end: { error in sink.record(end: error.map { "\($0.code)" } ?? "ok") })
        }
        let transport = DirectHTTP2ServerTransport(host: "127.0.0.1", port: 0, configuration: config)
        var router = RPCRouter<DirectHTTP2ServerTransport>()
        router.registerHandler(forMethod: echo, deserializer: Bytes(), serializer: Bytes()) { request, _ in
            var all: [UInt8] = []
            for try await message in request.messages { all += message }
            return StreamingServerResponse(single: ServerResponse(message: all))
        }
        // Answers each message with its length and a checksum: the stream test measures our
        // inbound flow control. (Echoing megabytes back made swift-nio-http2's *client* now and then
        // send a stream WINDOW_UPDATE past 2^31 - 1 under load and fail the call: its inbound window
        // grew by repeated top-ups from stale window events. Our frames were logged and correct;
        // grpc-swift's client reading a long stream is not what this test is about.)
        router.registerHandler(forMethod: chat, deserializer: Bytes(), serializer: Bytes()) { request, _ in
            StreamingServerResponse { writer in
                for try await message in request.messages { try await writer.write(Self.digest(message)) }
                return [:]
            }
        }
        // Streams back as many 10 KB messages as the request's first byte times 1,000.
        let spewWritten = self.spewWritten
        router.registerHandler(forMethod: spew, deserializer: Bytes(), serializer: Bytes()) { request, _ in
            StreamingServerResponse { writer in
                var count = 0
                for try await message in request.messages { count = Int(message.first ?? 0) * 1_000 }
                let chunk = [UInt8](repeating: 7, count: 10_000)
                for _ in 0..<count {
                    try await writer.write(chunk)
                    spewWritten.add()
                }
                return [:]
            }
        }
        router.registerHandler(forMethod: fail, deserializer: Bytes(), serializer: Bytes()) { _, _ in
            throw RPCError(code: .failedPrecondition, message: "refused: 50% done, naïve")
        }
        let (started, cancelled) = (self.started, self.cancelled)
        router.registerHandler(forMethod: hang, deserializer: Bytes(), serializer: Bytes()) { request, context in
            started.add()
            // Waits for the client to go away.
            await withRPCCancellationHandler {
                for await _ in AsyncStream<Never>.makeStream().stream {}
            } onCancelRPC: {
                cancelled.add()
            }
            return StreamingServerResponse(single: ServerResponse(message: []))
        }
        let server = GRPCServer(transport: transport, router: router)
        self.transport = transport
        self.serving = Task { try await server.serve() }
        let port = try await transport.listeningPort
        let client = GRPCClient(transport: try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext,
            config: .defaults))
        self.client = client
        self.connections = Task { try? await client.runConnections() }
    }

    /// Length and a position-weighted sum of `message`, little-endian: 16 bytes that change when
    /// any byte is lost, duplicated or moved.
    ///
    /// An index loop over the buffer: with a debug build's `enumerated()` the 48 digests of the
    /// stream test took about 7 s of cooperative-pool time (the test ran 8.0 s alone, now 1.3 s),
    /// which starved the timers of the cluster suites running alongside.
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var sum: UInt64 = 0
        message.withUnsafeBufferPointer { bytes in
            for i in 0..<bytes.count { sum = sum &* 31 &+ UInt64(bytes[i]) &+ UInt64(i) }
        }
        return withUnsafeBytes(of: UInt64(message.count).littleEndian, Array.init) + withUnsafeBytes(of: sum.littleEndian, Array.init)
    }

    func unary(_ method: MethodDescriptor, _ message: [UInt8], timeout: Duration? = nil) async throws -> [UInt8] {
        var options = CallOptions.defaults
        options.timeout = timeout
        return try await client.unary(request: ClientRequest(message: message), descriptor: method, serializer: Bytes(),
                                      deserializer: Bytes(), options: options) { try $0.message }
    }

    func stop() async {
        client.beginGracefulShutdown()
        await connections.value
        serving.cancel()
        _ = try? await serving.value
    }
}

@Suite("DirectHTTP2ServerTransport")
struct DirectHTTP2ServerTransportTests {
    @Test("unary calls through the router and through the fast path; errors keep their code and message")
    func unaryAndErrors() async throws {
        let f = try await Fixture()
        #expect(try await f.unary(echo, [1, 2, 3]) == [1, 2, 3])
        #expect(try await f.unary(fast, [1, 2, 3]) == [3, 2, 1])
        #expect(try await f.unary(echo, []) == [])
        await #expect {
            _ = try await f.unary(fail, [1])
        } throws: { error in
            let e = error as? RPCError
            return e?.code == .failedPrecondition && e?.message == "refused: 50% done, naïve"
        }
        await #expect {
            _ = try await f.unary(fastFail, [1])
        } throws: { error in
            let e = error as? RPCError
            return e?.code == .notFound && e?.message == "no such thing: 100% ü"
        }
        await #expect {
            _ = try await f.unary(unknown, [1])
        } throws: { ($0 as? RPCError)?.code == .unimplemented }
        await f.stop()
    }

    /// A stream whose final HEADERS closed it inside the write (swift-nio-http2 can report the
    /// close while the write is in progress) was put back in the table after the close had
    /// removed it: it stayed there for the connection's life, with its sink slot and the receive
    /// buffer its last DATA frame was sliced from (the leader's memory grew with every forwarded write).
    @Test("every call's stream leaves the table when it closes, on both paths")
    func streamsLeaveTheTable() async throws {
        let f = try await Fixture()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    // Answers and errors, through the router and on the fast path: an error is
                    // trailers only, which swift-nio-http2 writes (and closes) at once.
                    let methods = [fast, echo, fastFail, fail]
                    for i in 0..<200 {
                        _ = try? await f.unary(methods[(worker + i) % methods.count], Array("call \(i)".utf8))
                    }
                }
            }
            try await group.waitForAll()
        }
        // The last closes may still be on their way from swift-nio-http2.
        let deadline = ContinuousClock.now + .seconds(30)
        while f.transport.statistics.openStreams != 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(f.transport.statistics.openStreams == 0)
        await f.stop()
    }

    @Test("many concurrent calls on one connection all get their own answer")
    func concurrentCalls() async throws {
        let f = try await Fixture()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<400 {
                group.addTask {
                    let message = Array("call \(i)".utf8)
                    let method = i % 2 == 0 ? fast : echo
                    let answer = try await f.unary(method, message)
                    #expect(answer == (method == fast ? message.reversed() : message))
                }
            }
            try await group.waitForAll()
        }
        await f.stop()
    }

    @Test("messages larger than the HTTP/2 windows cross both ways; a stream longer than its window is re-opened as read")
    func flowControl() async throws {
        let f = try await Fixture()
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try await f.unary(echo, big) == big)
        #expect(try await f.unary(fast, big) == big.reversed())
        // 24 messages of 1 MB on one stream: three times the 8 MiB stream window, so the client
        // stalls unless our window is re-opened as the service reads.
        let chunk = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0) }
        let expected = Fixture.digest(chunk)
        let received = try await f.client.bidirectionalStreaming(
            request: StreamingClientRequest(of: [UInt8].self) { writer in
                for _ in 0..<24 { try await writer.write(chunk) }
            },
            descriptor: chat, serializer: Bytes(), deserializer: Bytes(), options: .defaults
        ) { response in
            var count = 0
            for try await message in response.messages {
                #expect(message == expected)
                count += 1
            }
            return count
        }
        #expect(received == 24)
        await f.stop()
    }

    @Test("a sink method greets, gets every message in order past its stream window, and hears once how each call ended")
    func sinkMethod() async throws {
        let f = try await Fixture()
        func call(_ metadata: Metadata = [:], _ produce: @escaping @Sendable (RPCWriter<[UInt8]>) async throws -> Void) async throws -> [[UInt8]] {
            try await f.client.bidirectionalStreaming(
                request: StreamingClientRequest(of: [UInt8].self, metadata: metadata, producer: produce),
                descriptor: collect, serializer: Bytes(), deserializer: Bytes(), options: .defaults
            ) { response in
                var messages: [[UInt8]] = []
                for try await message in response.messages { messages.append(message) }
                return messages
            }
        }
        // 24 distinct 1 MB messages: three times the 8 MiB stream window, so the client stalls
        // unless the window re-opens as the sink takes them.
        let chunks = (0..<24).map { [UInt8](repeating: UInt8($0), count: 1_000_000) }
        let answer = try await call { writer in
            for chunk in chunks { try await writer.write(chunk) }
        }
        #expect(answer == [[1, 2, 3]])
        #expect(f.sink.digests == chunks.map(Fixture.digest))
        #expect(f.sink.ends == ["ok"])

        await #expect {
            _ = try await call(["refuse": "yes"]) { _ in }
        } throws: { ($0 as? RPCError)?.code == .permissionDenied && ($0 as? RPCError)?.message == "refused by the test" }
        #expect(f.sink.ends == ["ok"], "a refused call never opened, so it never ends")

        #expect(try await f.unary(fast, [1, 2]) == [2, 1], "the connection serves on")

        // A call still open when the server stops: after the grace period the connection closes
        // and the sink hears the call ended without the client ending it.
        let hanging = Task {
            try await call { writer in
                try await writer.write([9])
                try await Task.sleep(for: .seconds(60))
            }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while f.sink.digests.count < 25, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.sink.digests.last == Fixture.digest([9]))
        f.serving.cancel()
        while f.sink.ends.count < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.sink.ends == ["ok", "unavailable"])
        await #expect(throws: (any Error).self) { try await hanging.value }
        await f.stop()
    }

    /// The worker protocol's assignment streams are long-lived server streams on this transport
    /// (the masters' rpc port): a grpc-swift client must read them for as long as it stays
    /// connected. Heavy: 300 MB through a debug build keep both cores busy for seconds, which
    /// would starve the timers of cluster suites running alongside.
    @Test("a grpc-swift client reads long server streams of small messages (3 x 100 MB in 10 KB messages)", .heavy)
    func longServerStream() async throws {
        let f = try await Fixture()
        for _ in 0..<3 {
            let received = try await f.client.serverStreaming(
                request: ClientRequest(message: [10]), descriptor: spew, serializer: Bytes(), deserializer: Bytes(),
                options: .defaults
            ) { response in
                var count = 0
                for try await message in response.messages where message.count == 10_000 { count += 1 }
                return count
            }
            #expect(received == 10_000)
        }
        await f.stop()
    }

    @Test("a client that reads nothing holds a streaming service's writes back: what the server buffers stays bounded", .heavy)
    func slowReaderBackpressure() async throws {
        let f = try await Fixture()
        let reading = OpenOnce()
        let call = Task {
            try await f.client.serverStreaming(
                request: ClientRequest(message: [10]), descriptor: spew, serializer: Bytes(), deserializer: Bytes(),
                options: .defaults
            ) { response in
                await reading.wait()
                var count = 0
                for try await message in response.messages where message.count == 10_000 { count += 1 }
                return count
            }
        }
        // Until the service's writes stop advancing (bounded by a deadline, not a fixed sleep).
        let deadline = ContinuousClock.now + .seconds(60)
        var written = -1
        var unchangedSince = ContinuousClock.now
        while ContinuousClock.now < deadline {
            let now = f.spewWritten.count
            if now != written {
                written = now
                unchangedSince = .now
            } else if now > 0 && ContinuousClock.now - unchangedSince > .milliseconds(500) {
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        // 10,000 messages (100 MB) were asked for. What may be out: the client's windows, the
        // socket buffers and the transport's 1 MiB bound; without backpressure, all of it.
        #expect(written > 0 && written < 4_000, "the service wrote \(written) messages of 10 KB to a client that read none")
        reading.open()
        #expect(try await call.value == 10_000)
        #expect(f.spewWritten.count == 10_000)
        await f.stop()
    }

    @Test("a request over the message limit is refused with resourceExhausted and the connection stays usable")
    func oversized() async throws {
        let f = try await Fixture(maxRequest: 1_000)
        await #expect {
            _ = try await f.unary(echo, Array(repeating: 1, count: 5_000))
        } throws: { ($0 as? RPCError)?.code == .resourceExhausted }
        await #expect {
            _ = try await f.unary(fast, Array(repeating: 1, count: 5_000))
        } throws: { ($0 as? RPCError)?.code == .resourceExhausted }
        #expect(try await f.unary(echo, [7]) == [7])
        await f.stop()
    }

    @Test("a client that gives up cancels the server's call (RST_STREAM reaches its cancellation handle)")
    func clientCancellation() async throws {
        let f = try await Fixture()
        let call = Task { try await f.unary(hang, [1]) }
        // Generous: CI runs every suite of the process at once on 2 cores.
        let deadline = ContinuousClock.now + .seconds(60)
        while f.started.count == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.started.count == 1)
        call.cancel()
        await #expect(throws: (any Error).self) { try await call.value }
        while f.cancelled.count == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.cancelled.count == 1)
        // The connection serves on.
        #expect(try await f.unary(fast, [1, 2]) == [2, 1])
        await f.stop()
    }

    @Test("a fast-path call past its grpc-timeout is answered DEADLINE_EXCEEDED by the server and its task cancelled")
    func fastPathDeadline() async throws {
        let f = try await Fixture()
        // curl sends the header and does not enforce the deadline itself (grpc-swift and grpc-go
        // clients do, and would reset the stream first), so the answer can only be the server's.
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-body-\(UUID().uuidString)")
        try Data([0, 0, 0, 0, 1, 42]).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        let port = try await f.transport.listeningPort
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sS", "--http2-prior-knowledge", "--max-time", "20", "-D", "-", "-o", "/dev/null",
                          "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 300m",
                          "--data-binary", "@\(body.path)", "http://127.0.0.1:\(port)/test.Fast/Slow"]
        let output = Pipe()
        curl.standardOutput = output
        let started = ContinuousClock.now
        try curl.run()
        let headers = String(decoding: try output.fileHandleForReading.readToEnd() ?? Data(), as: UTF8.self)
        curl.waitUntilExit()
        let elapsed = ContinuousClock.now - started
        #expect(curl.terminationStatus == 0, "\(headers)")
        #expect(headers.lowercased().contains("grpc-status: 4"), "\(headers)")  // DEADLINE_EXCEEDED
        #expect(elapsed < .seconds(15), "answered after \(elapsed)")
        // The call's task may start only after the deadline under load; it must still end cancelled.
        let deadline = ContinuousClock.now + .seconds(60)
        while f.slowCancelled.count == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.slowStarted.count == 1)
        #expect(f.slowCancelled.count == 1, "the call's task was not cancelled")
        // The connection and the fast path still work.
        #expect(try await f.unary(fast, [1, 2]) == [2, 1])
        await f.stop()
    }

    @Test("stopping with a call still open closes the connection after the grace period instead of hanging")
    func stopWithOpenCall() async throws {
        let f = try await Fixture()
        let open = Task { try await f.unary(hang, [1]) }
        let deadline = ContinuousClock.now + .seconds(60)
        while f.started.count == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let stopping = ContinuousClock.now
        f.serving.cancel()
        _ = try? await f.serving.value
        // The grace is 500 ms; the bound only has to tell "stopped" from "waits for the call forever".
        #expect(ContinuousClock.now - stopping < .seconds(20))
        #expect(f.transport.openConnections == 0)
        await #expect(throws: RPCError.self) { try await open.value }
        f.client.beginGracefulShutdown()
        await f.connections.value
    }
}

/// Waits until opened, once.
private final class OpenOnce: Sendable {
    private let signal = AsyncStream<Never>.makeStream()

    func open() { signal.continuation.finish() }

    func wait() async {
        for await _ in signal.stream {}
    }
}

