@testable import Agent
import Foundation
import Synchronization
import Testing

/// Whether and how the Docker tests can run: dockerd on its default socket and the local test
/// image (`scripts/make-test-image.sh`; no registry is reachable, nothing is ever pulled).
enum DockerTestEnvironment {
    static let socketPath = "/var/run/docker.sock"
    static let image = "orch-test/busybox:latest"

    /// Under CI a missing Docker is a failure, elsewhere a reason to skip.
    static let isCI: Bool = {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !["", "0", "false", "no"].contains(value.lowercased())
    }()

    /// Whether something accepts connections on the socket (checked once, synchronously, so a
    /// suite trait can use it).
    static let reachable: Bool = {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path)
            buffer[path.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }()

    /// The suites run when Docker is there, and under CI also when it is not (to fail loudly).
    static var enabled: Bool { reachable || isCI }

    static let skipComment: Comment = "dockerd does not answer on /var/run/docker.sock (with CI set this fails instead)"

    /// Checks Docker and builds the test image when missing, once per test run.
    static func prepare() async throws {
        try await prepared.value
    }

    private static let prepared = Task<Void, any Error> { try await checkDockerAndImage() }

    private static func checkDockerAndImage() async throws {
        guard reachable else {
            Issue.record("dockerd does not answer on \(socketPath): install docker.io and start it (`dockerd >/tmp/dockerd.log 2>&1 &`); .ci/run does both")
            throw TestFailure("Docker unavailable")
        }
        let runtime = DockerRuntime(owner: "agent-test-probe")
        do {
            try await runtime.ping()
            let request = try runtime.api.request(.get, "/images/\(DockerAPI.encodeImagePath(image))/json")
            let response = try await runtime.api.send(request, operation: "inspect test image", timeout: .seconds(60))
            if response.status == 404 { try buildImage() }
        } catch {
            try? await runtime.shutdown()
            throw error
        }
        try await runtime.shutdown()
    }

    /// Runs scripts/make-test-image.sh.
    private static func buildImage() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/make-test-image.sh")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            Issue.record("scripts/make-test-image.sh failed (\(process.terminationStatus)): \(text)")
            throw TestFailure("no test image")
        }
    }
}

/// The Docker runtimes a test created, shut down at clean-up.
final class DockerRuntimes: Sendable {
    let owner: String
    private let created = Mutex<[DockerRuntime]>([])

    init(owner: String) { self.owner = owner }

    func make(configuration: DockerRuntime.Configuration = .init()) -> DockerRuntime {
        let runtime = DockerRuntime(owner: owner, configuration: configuration)
        created.withLock { $0.append(runtime) }
        return runtime
    }

    /// Removes every container of this owner, then shuts the runtimes down.
    func cleanUp() async {
        let sweeper = make()
        if let left = try? await sweeper.list() {
            for info in left { try? await sweeper.remove(taskID: info.taskID) }
        }
        for runtime in created.withLock({ $0 }) { try? await runtime.shutdown() }
    }
}

extension RuntimeHarness {
    /// Docker runtimes of a fresh owner; clean-up removes the owner's containers by label.
    static func docker() async throws -> RuntimeHarness {
        try await DockerTestEnvironment.prepare()
        let runtimes = DockerRuntimes(owner: "agent-test-\(UUID().uuidString.prefix(8).lowercased())")
        let make: @Sendable () async throws -> any TaskRuntime = { runtimes.make() }
        let task: @Sendable (String, [String]) -> RuntimeTask = { id, command in
            RuntimeTask(taskID: id, epoch: 1, name: "test", image: DockerTestEnvironment.image, command: command)
        }
        let signal: @Sendable (String, Int32) async throws -> Void = { taskID, signal in
            try await runtimes.kill(taskID: taskID, signal: signal)
        }
        return RuntimeHarness(name: "docker", make: make, task: task, signal: signal, cleanUp: { await runtimes.cleanUp() })
    }
}

extension DockerRuntimes {
    /// Signals the task's container from outside the runtime (`POST /containers/{id}/kill`).
    func kill(taskID: String, signal: Int32) async throws {
        let runtime = make()
        let container = try await runtime.inspect(taskID: taskID)
        let request = try runtime.api.request(.post, "/containers/\(container.id)/kill", query: [("signal", String(signal))])
        let response = try await runtime.api.send(request, operation: "kill", timeout: .seconds(60))
        #expect(response.status == 204, "kill answered \(response.status): \(response.message)")
    }
}
