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
}
