import Foundation

/// Our 3-replica cluster in a child process: `local-etcd` (Tools/), built with the tests.
final class LocalClusterProcess: @unchecked Sendable {
    // `Process` is only queried and signalled after `run()`.
    private let process: Process
    private let output: BackgroundEtcdctl

    private init(process: Process, output: BackgroundEtcdctl) {
        self.process = process
        self.output = output
    }

    static func start() throws -> LocalClusterProcess {
        guard let binary = locate("local-etcd") else {
            throw Etcdctl.Failure(description: "local-etcd not found next to the test bundle; build it with `swift build --build-tests`")
        }
        let process = Process()
        process.executableURL = binary
        let output = try BackgroundEtcdctl(process: process, inputPipe: Pipe())
        let cluster = LocalClusterProcess(process: process, output: output)
        return cluster
    }

    /// The endpoints it prints once its cluster has a leader.
    func endpoints() async throws -> [String] {
        try await output.waitForOutput("its endpoints", timeout: .seconds(30)) { $0.contains("endpoints ") && $0.hasSuffix("\n") }
        let line = output.output().split(separator: "\n").first { $0.hasPrefix("endpoints ") }!
        return line.dropFirst("endpoints ".count).split(separator: ",").map(String.init)
    }

    /// Closes its standard input (it shuts its cluster down and exits), SIGTERM/SIGKILL after that.
    func stop() async {
        output.closeInput()
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        await output.stop()
    }

    /// An executable of this package: `swift test` puts them next to the test bundle.
    static func locate(_ name: String) -> URL? {
        var starts = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent(),
                      Bundle.main.bundleURL]
        if let exe = Bundle.main.executableURL { starts.append(exe.deletingLastPathComponent()) }
        for start in starts {
            var dir = start
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        return nil
    }
}
