import Foundation
import Logging

/// Which runtime a worker uses (`--runtime`).
public enum RuntimeKind: String, Sendable, CaseIterable {
    case docker, process
    /// `docker` when the socket answers, else `process` (`master --dev`).
    case auto
}

extension RuntimeKind {
    /// Builds the runtime, labelling what it starts with `owner` (the node id). `auto` probes the
    /// Docker socket once.
    public func make(owner: String, dataDir: String, dockerSocket: String, logger: Logger) async throws -> (any TaskRuntime, RuntimeKind) {
        switch self {
        case .docker:
            let docker = DockerRuntime(owner: owner, configuration: .init(socketPath: dockerSocket), logger: logger)
            try await docker.ping()
            return (docker, .docker)
        case .process:
            return (try ProcessRuntime(directory: dataDir + "/processes", logger: logger), .process)
        case .auto:
            if FileManager.default.fileExists(atPath: dockerSocket) {
                let docker = DockerRuntime(owner: owner, configuration: .init(socketPath: dockerSocket), logger: logger)
                if (try? await docker.ping()) != nil { return (docker, .docker) }
                try? await docker.shutdown()
            }
            return (try ProcessRuntime(directory: dataDir + "/processes", logger: logger), .process)
        }
    }
}
