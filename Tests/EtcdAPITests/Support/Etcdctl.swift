import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs Debian's real `etcdctl` (3.4, package etcd-client) against our endpoints, with
/// `ETCDCTL_API=3`. CI installs it: when it is missing the tests fail with `Etcdctl.Missing`
/// (under CI) or are skipped (on a developer machine without it).
struct Etcdctl {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "etcdctl not found at \(Etcdctl.binary): the etcd API tests drive Debian's etcdctl 3.4 " +
                "(apt-get install etcd-client; .ci/run installs it), or set ETCDCTL_BINARY"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What one run printed.
    struct Output: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
        var succeeded: Bool { status == 0 }
    }

    static var binary: String { ProcessInfo.processInfo.environment["ETCDCTL_BINARY"] ?? "/usr/bin/etcdctl" }
    static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: binary) }
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" } ?? false }
    /// Tests run where etcdctl exists, and always under CI (where its absence is a failure).
    static var shouldRun: Bool { isAvailable || isCI }

    let endpoints: [String]

    init(endpoints: [String]) throws {
        guard Self.isAvailable else { throw Missing() }
        self.endpoints = endpoints
    }

    /// Runs `etcdctl --endpoints=... ARGS` to completion (killed after `timeout`), feeding `stdin`.
    func run(_ arguments: [String], stdin: String? = nil, timeout: Duration = .seconds(30)) async throws -> Output {
        let process = try launch(arguments, stdin: stdin)
        let deadline = ContinuousClock.now + timeout
        while process.process.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        if process.process.isRunning {
            await process.stop()
            throw Failure(description: "etcdctl \(arguments.joined(separator: " ")) did not finish within \(timeout): \(process.output())")
        }
        await process.stop()
        return Output(status: process.process.terminationStatus, stdout: process.output(), stderr: process.errors())
    }

    /// Runs and expects success; returns what it printed on stdout.
    @discardableResult
    func ok(_ arguments: [String], stdin: String? = nil, timeout: Duration = .seconds(30)) async throws -> String {
        let out = try await run(arguments, stdin: stdin, timeout: timeout)
        guard out.succeeded else {
            throw Failure(description: "etcdctl \(arguments.joined(separator: " ")) exited \(out.status): \(out.stderr)\(out.stdout)")
        }
        return out.stdout
    }

    /// Starts etcdctl in the background (e.g. `watch`); the caller must `stop()` it.
    func launch(_ arguments: [String], stdin: String? = nil, endpoints: [String]? = nil) throws -> BackgroundEtcdctl {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--endpoints=" + (endpoints ?? self.endpoints).joined(separator: ","), "--command-timeout=20s"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["ETCDCTL_API"] = "3"
        process.environment = environment
        return try BackgroundEtcdctl(process: process, stdin: stdin)
    }
}

/// An etcdctl process whose output is collected as it arrives.
final class BackgroundEtcdctl: @unchecked Sendable {
    // `Process` is not Sendable; it is only queried (isRunning, pid, status) after `run()`.
    let process: Process
    private let stdoutText = TextBuffer()
    private let stderrText = TextBuffer()
    /// Pipes that reached end of file (the process closed them by exiting).
    private let closedPipes = Locked(0)

    /// Its standard input while the caller keeps it open (`closeInput()` ends it).
    private let openInput: Pipe?

    /// Starts `process`; `stdin` is written to its standard input, which is then closed.
    convenience init(process: Process, stdin: String?) throws {
        try self.init(process: process, stdin: stdin, inputPipe: nil)
    }

    /// Starts `process` with `inputPipe` as its standard input, left open until `closeInput()`.
    convenience init(process: Process, inputPipe: Pipe) throws {
        try self.init(process: process, stdin: nil, inputPipe: inputPipe)
    }

    private init(process: Process, stdin: String?, inputPipe: Pipe?) throws {
        self.process = process
        self.openInput = inputPipe
        let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inputPipe ?? (stdin == nil ? FileHandle.nullDevice : inPipe)
        for (pipe, text) in [(outPipe, stdoutText), (errPipe, stderrText)] {
            pipe.fileHandleForReading.readabilityHandler = { [closedPipes] handle in
                let data = handle.availableData
                if data.isEmpty {
                    handle.readabilityHandler = nil
                    closedPipes.withLock { $0 += 1 }
                } else {
                    text.append(String(decoding: data, as: UTF8.self))
                }
            }
        }
        try process.run()
        if let stdin {
            inPipe.fileHandleForWriting.write(Data(stdin.utf8))
            try? inPipe.fileHandleForWriting.close()
        }
    }

    /// Closes the standard input given as `inputPipe`.
    func closeInput() {
        try? openInput?.fileHandleForWriting.close()
    }

    func output() -> String { stdoutText.text }
    func errors() -> String { stderrText.text }

    /// Polls the output until `condition` holds on it; fails after `timeout`.
    func waitForOutput(_ what: String, timeout: Duration = .seconds(20), _ condition: (String) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(output()) {
            guard ContinuousClock.now < deadline else {
                throw Etcdctl.Failure(description: "etcdctl never printed \(what) within \(timeout); stdout: \(output().suffix(2000)) stderr: \(errors().suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// SIGTERM (SIGKILL after 5 s), then collects the rest of the output. Idempotent.
    func stop() async {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(5)
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        // The pipes hit end of file once the last output is read: wait for that (bounded).
        let deadline = ContinuousClock.now + .seconds(5)
        while closedPipes.withLock({ $0 }) < 2 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Text collected from a pipe as it arrives.
final class TextBuffer: Sendable {
    private let content = Mutex("")

    func append(_ more: String) {
        content.withLock { $0 += more }
    }

    var text: String { content.withLock { $0 } }
}

/// A value behind a lock, shareable by reference with closures and tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T {
        mutex.withLock { body(&$0) }
    }
}
