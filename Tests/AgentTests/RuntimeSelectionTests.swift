import Agent
import Testing

/// `--runtime` never falls back to unisolated processes unless asked (the security review's
/// finding 6): the decision over "Docker answered?" and the flags.
@Suite struct RuntimeSelectionTests {
    /// (flag, docker reachable, --dev) -> chosen kind, or nil when the worker refuses to start.
    @Test("the runtime chosen for each flag, engine and mode", arguments: [
        (RuntimeKind.docker, true, false, RuntimeKind.docker),
        (.docker, false, false, nil),
        (.docker, false, true, nil),
        (.process, nil, false, .process),
        (.process, nil, true, .process),
        (.auto, true, false, .docker),
        (.auto, true, true, .docker),
        (.auto, false, false, nil),          // a production worker: no silent fallback
        (.auto, false, true, .process),      // master --dev without Docker: explicit, and warned
    ] as [(RuntimeKind, Bool?, Bool, RuntimeKind?)])
    func choose(flag: RuntimeKind, reachable: Bool?, dev: Bool, expected: RuntimeKind?) {
        do {
            let choice = try flag.choose(dockerReachable: reachable, dev: dev, socket: "/var/run/docker.sock")
            #expect(choice.kind == expected)
            #expect(choice.unisolated == (choice.kind == .process))
            #expect(choice.reason.hasPrefix(dev && flag == .auto ? "master --dev" : "--runtime \(flag.rawValue)"), "\(choice.reason)")
        } catch {
            #expect(expected == nil, "\(error)")
            #expect(error == .dockerUnreachable(requested: flag, socket: "/var/run/docker.sock", detail: "no answer"))
        }
    }

    @Test("the refusal is one line saying to start Docker or pass --runtime process")
    func message() {
        let text = RuntimeSelectionError.dockerUnreachable(requested: .auto, socket: "/var/run/docker.sock", detail: "connection refused").description
        #expect(!text.contains("\n"))
        #expect(text.hasPrefix("--runtime auto: no Docker engine answers on /var/run/docker.sock (connection refused)"))
        #expect(text.contains("start Docker"))
        #expect(text.contains("--runtime process"))
    }

    @Test("auto without an engine on a real socket path fails at start; --dev gets processes")
    func makeWithoutDocker() async throws {
        let missing = "/tmp/no-docker-\(UInt64.random(in: 0...UInt64.max)).sock"
        await #expect(throws: RuntimeSelectionError.self) {
            _ = try await RuntimeKind.auto.make(owner: "n1", dataDir: "/tmp/unused", docker: .init(socketPath: missing))
        }
        let dir = "/tmp/runtime-selection-\(UInt64.random(in: 0...UInt64.max))"
        let (runtime, choice) = try await RuntimeKind.auto.make(owner: "n1", dataDir: dir, docker: .init(socketPath: missing), dev: true)
        #expect(choice.kind == .process)
        #expect(runtime is ProcessRuntime)
        try await runtime.shutdown()
    }

    @Test("user labels cannot take the orchestrator. prefix", arguments: [
        ("", [:]),
        ("zone=a,disk=ssd", ["zone": "a", "disk": "ssd"]),
        ("k=", ["k": ""]),
        ("k=a=b", ["k": "a=b"]),
        ("orchestrator.runtime=docker", nil),
        ("Orchestrator.Runtime=process", nil),
        ("zone=a,orchestrator.owner=x", nil),
        ("novalue", nil),
        ("=v", nil),
    ] as [(String, [String: String]?)])
    func labels(text: String, expected: [String: String]?) {
        do {
            let labels = try NodeLabels.parse(text)
            #expect(labels == expected)
        } catch {
            #expect(expected == nil, "\(error)")
            #expect(error.description.hasPrefix("--labels"))
        }
    }
}
