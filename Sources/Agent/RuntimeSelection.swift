import Foundation
import Logging

/// Which runtime a worker uses (`--runtime`).
public enum RuntimeKind: String, Sendable, CaseIterable {
    case docker, process
    /// `docker` when its engine answers; without one, `process` only in `master --dev`.
    case auto
}

/// The runtime a worker settles on, and why (logged at start, and the node's
/// `orchestrator.runtime` label says which).
public struct RuntimeChoice: Sendable, Equatable {
    /// `.docker` or `.process`, never `.auto`.
    public var kind: RuntimeKind
    /// One line for the log: what was asked and what was found.
    public var reason: String
    /// Whether tasks run unisolated on this host: the log says so as a warning, not a notice.
    public var unisolated: Bool { kind == .process }
}

/// Why no runtime could be chosen.
public enum RuntimeSelectionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `--runtime docker`, or `auto` outside `--dev`, with no Docker engine answering.
    case dockerUnreachable(requested: RuntimeKind, socket: String, detail: String)

    public var description: String {
        switch self {
        case .dockerUnreachable(let requested, let socket, let detail):
            "--runtime \(requested.rawValue): no Docker engine answers on \(socket) (\(detail)); "
                + "start Docker (or set --docker-socket), or pass --runtime process to run tasks as unisolated processes on this host"
        }
    }
}

extension RuntimeKind {
    /// The pure decision: what `self` (the `--runtime` flag) means given whether Docker answered.
    /// The process runtime gives tasks no isolation and ignores their image and limits, so it is
    /// only ever an explicit choice: `--runtime process`, or `master --dev` (a laptop trial that
    /// warns about it) when no Docker engine is there. A production worker never falls back to it
    /// silently.
    ///
    /// - Parameters:
    ///   - dockerReachable: whether the engine answered a ping (nil: not probed, for `process`).
    ///   - dev: the embedded worker of `master --dev`.
    public func choose(dockerReachable: Bool?, dev: Bool, socket: String, detail: String = "no answer")
        throws(RuntimeSelectionError) -> RuntimeChoice {
        switch self {
        case .process:
            return RuntimeChoice(kind: .process, reason: "--runtime process: tasks run as processes on this host, without isolation or limits")
        case .docker:
            guard dockerReachable == true else { throw .dockerUnreachable(requested: .docker, socket: socket, detail: detail) }
            return RuntimeChoice(kind: .docker, reason: "--runtime docker: the engine answers on \(socket)")
        case .auto:
            // The embedded worker of `master --dev` uses auto without the operator asking for it.
            let asked = dev ? "master --dev" : "--runtime auto"
            if dockerReachable == true {
                return RuntimeChoice(kind: .docker, reason: "\(asked): a Docker engine answers on \(socket)")
            }
            guard dev else { throw .dockerUnreachable(requested: .auto, socket: socket, detail: detail) }
            return RuntimeChoice(kind: .process, reason: """
                master --dev and no Docker engine answers on \(socket) (\(detail)): the embedded worker runs tasks as PROCESSES ON \
                THIS HOST, with the task's image and its cpu/memory limits ignored (start dockerd to run them as containers)
                """)
        }
    }

    /// Probes Docker when the choice depends on it, decides with `choose`, logs the choice (a
    /// notice; a warning for the process runtime) and builds the runtime, labelling what it
    /// starts with `owner` (the node id).
    public func make(owner: String, dataDir: String, docker configuration: DockerRuntime.Configuration, dev: Bool = false,
                     logger: Logger = Logger(label: "orchestrator.agent.runtime")) async throws -> (any TaskRuntime, RuntimeChoice) {
        var docker: DockerRuntime?
        var reachable: Bool?
        var detail = "no answer"
        if self != .process {
            let runtime = DockerRuntime(owner: owner, configuration: configuration, logger: logger)
            do {
                try await runtime.ping()
                reachable = true
                docker = runtime
            } catch {
                reachable = false
                if case .dockerUnreachable(_, let message)? = error as? RuntimeError { detail = message } else { detail = "\(error)" }
                try? await runtime.shutdown()
            }
        }
        let choice: RuntimeChoice
        do {
            choice = try choose(dockerReachable: reachable, dev: dev, socket: configuration.socketPath, detail: detail)
        } catch {
            try? await docker?.shutdown()
            throw error
        }
        if choice.unisolated {
            logger.warning("runtime: process", metadata: ["why": "\(choice.reason)"])
        } else {
            logger.notice("runtime: docker", metadata: ["why": "\(choice.reason)"])
        }
        if choice.kind == .docker, let docker { return (docker, choice) }
        return (try ProcessRuntime(directory: dataDir + "/processes", logger: logger), choice)
    }
}
