import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCServing

extension WorkerAgent {
    /// The gRPC server masters fetch task logs from.
    func makeLogServer() -> StoppableGRPCServer<HTTP2ServerTransport.Posix> {
        let tracker = ConnectionTracker()
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: config.listenAddress.host == "localhost" ? "127.0.0.1" : config.listenAddress.host, port: config.listenAddress.port),
            transportSecurity: config.tls?.grpcServerSecurity() ?? .plaintext, config: .defaults { tracker.install(on: &$0) })
        let service = LogService(runtime: runtime, finished: finishedLogs, authorization: config.tls == nil ? .unauthenticated : .mutualTLS)
        return StoppableGRPCServer(transport: transport, services: [service],
                                   tracker: tracker)
    }
}

/// Serves `orchestrator.v1.Worker/Logs` from the runtime.
struct LogService: Orchestrator_V1_Worker.SimpleServiceProtocol {
    let runtime: any TaskRuntime
    let finished: FinishedLogs
    /// With TLS: only a master's certificate may read task output (which can hold secrets);
    /// REST clients get logs through a master, which checks their API token.
    let authorization: CallerAuthorization

    func logs(request: Orchestrator_V1_LogsRequest, context: ServerContext) async throws -> Orchestrator_V1_LogsResponse {
        try authorization.caller(context, mustBe: [.master])
        let limit = request.limitBytes > 0 ? Int(min(request.limitBytes, 1 << 20)) : 64 << 10
        do {
            let data = try await runtime.logs(taskID: request.taskID, limit: limit)
            return .with { $0.data = Data(data) }
        } catch {
            if let kept = finished.load(taskID: request.taskID) { return .with { $0.data = Data(kept.suffix(limit)) } }
            throw RPCError(code: .notFound, message: "no logs for task \(request.taskID) on this worker: \(error)")
        }
    }

    func followLogs(request: Orchestrator_V1_FollowLogsRequest, response: RPCWriter<Orchestrator_V1_LogFrame>,
                    context: ServerContext) async throws {
        try authorization.caller(context, mustBe: [.master])
        let query = Self.query(request)
        let send: @Sendable ([LogFrame]) async throws -> Void = { frames in
            try await response.write(contentsOf: frames.map { frame in
                .with {
                    $0.stream = frame.stream == .stderr ? .stderr : .stdout
                    $0.unixMs = frame.unixMs
                    $0.data = Data(frame.bytes)
                }
            })
        }
        let outcome: TaskOutcome?
        do {
            outcome = try await runtime.readLogs(taskID: request.taskID, query: query, emit: send)
        } catch let error as RuntimeError where { if case .notFound = error { true } else { false } }() {
            // Ended and removed: what was kept of its output, and the end at once.
            guard let kept = finished.loadFrames(taskID: request.taskID) else {
                throw RPCError(code: .notFound, message: "no logs for task \(request.taskID) on this worker: \(error)")
            }
            let frames = LogSelection.select(kept, query)
            if !frames.isEmpty { try await send(frames) }
            if query.follow { try await response.write(.with { $0.ended = true }) }
            return
        }
        guard query.follow else { return }
        try await response.write(.with { frame in
            frame.ended = true
            if case .exited(let code) = outcome {
                frame.exited = true
                frame.exitCode = code
            }
        })
    }

    /// The request's query, within the worker's limits (1 MiB of past output at most).
    static func query(_ request: Orchestrator_V1_FollowLogsRequest) -> LogQuery {
        let streams: Set<LogStreamKind> = switch request.stream {
        case .stdout: [.stdout]
        case .stderr: [.stderr]
        default: [.stdout, .stderr]
        }
        return LogQuery(follow: request.follow,
                 tailLines: request.tailLines > 0 ? Int(min(request.tailLines, 1 << 20)) : nil,
                 sinceUnixMs: request.sinceUnixMs > 0 ? request.sinceUnixMs : nil,
                 limitBytes: request.limitBytes > 0 ? Int(min(request.limitBytes, 1 << 20)) : defaultLogLimit,
                 streams: streams)
    }
}
