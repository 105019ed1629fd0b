import ClusterModel
import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import Raft
import Store
import Synchronization

/// Serves `orchestrator.v1.Masters/Forward`: a follower hands the leader a store command.
struct ForwardService: Orchestrator_V1_Masters.SimpleServiceProtocol {
    /// Only masters forward writes: any other caller could run any store command.
    let authorization: CallerAuthorization
    let handle: @Sendable (Command) async throws -> Response
    /// `Masters/Membership`, answered by the master once it is built.
    let membership: MembershipHandler

    func forward(request: Orchestrator_V1_ForwardRequest, context: ServerContext) async throws -> Orchestrator_V1_ForwardResponse {
        try authorization.caller(context, mustBe: [.master])
        let command: Command
        do {
            command = try Command(decoding: Array(request.command))
        } catch {
            throw RPCError(code: .invalidArgument, message: "malformed command: \(error)")
        }
        do {
            let response = try await handle(command)
            return .with { $0.response = Data(response.encoded()) }
        } catch let error as RaftNodeError {
            // Carried in metadata so the follower can tell "certainly not applied, retry" apart.
            throw RPCError(code: .unavailable, message: error.description, metadata: ["raft-error": .string(ForwardErrorCode(error).rawValue)])
        }
    }
}

extension ForwardService {
    func membership(request: Orchestrator_V1_MembershipRequest, context: ServerContext) async throws -> Orchestrator_V1_MembershipResponse {
        try authorization.caller(context, mustBe: [.master])
        do {
            return try await membership.handle(request)
        } catch let error as MembershipError {
            throw error.rpcError
        }
    }
}

/// The master's membership handler, set once the master exists: the service that calls it is
/// built before the master is.
final class MembershipHandler: Sendable {
    typealias Handler = @Sendable (Orchestrator_V1_MembershipRequest) async throws -> Orchestrator_V1_MembershipResponse
    private let handler = Mutex<Handler?>(nil)

    func set(_ handler: @escaping Handler) { self.handler.withLock { $0 = handler } }

    func handle(_ request: Orchestrator_V1_MembershipRequest) async throws -> Orchestrator_V1_MembershipResponse {
        guard let handler = handler.withLock({ $0 }) else {
            throw MembershipError(.unavailable, "starting", "this master is starting; try again")
        }
        return try await handler(request)
    }
}

/// The Raft errors a forwarded write can end with, as they travel between masters.
enum ForwardErrorCode: String {
    case notLeader = "not-leader", proposalDropped = "proposal-dropped", timeout, stopped, rejected, storage

    init(_ error: RaftNodeError) {
        switch error {
        case .notLeader: self = .notLeader
        case .proposalDropped: self = .proposalDropped
        case .timeout: self = .timeout
        case .stopped: self = .stopped
        case .rejected: self = .rejected
        case .storage: self = .storage
        }
    }

    func error(message: String) -> RaftNodeError {
        switch self {
        case .notLeader: .notLeader(leader: noNode)
        case .proposalDropped: .proposalDropped
        case .timeout: .timeout
        case .stopped: .notLeader(leader: noNode)  // the leader is shutting down: find the next one
        case .rejected: .rejected(message)
        case .storage: .notLeader(leader: noNode)  // the leader's disk failed: it stops leading
        }
    }
}

/// The follower side: `RaftStore.Forward` over gRPC to the leader's rpc address.
struct ForwardClient: Sendable {
    let clients: PeerClients
    /// The rpc address of a member, as the current membership says.
    let address: @Sendable (NodeID) -> HostPort?

    func forward(to leader: NodeID, _ command: Command) async throws -> Response {
        guard let address = address(leader) else { throw RaftNodeError.notLeader(leader: noNode) }
        let stub = Orchestrator_V1_Masters.Client(wrapping: try clients.client(for: address))
        do {
            var options = CallOptions.defaults
            options.timeout = .seconds(10)
            let reply = try await stub.forward(.with { $0.command = Data(command.encoded()) }, options: options)
            return try Response(decoding: Array(reply.response))
        } catch let error as RPCError {
            if let code = error.metadata[stringValues: "raft-error"].first(where: { _ in true }), let known = ForwardErrorCode(rawValue: code) {
                throw known.error(message: error.message)
            }
            // The leader could not be reached, or the call broke after it was sent. Either way the
            // caller (RaftStore) finds the current leader and sends the command again under the
            // same request id: if the first one reached the log, the retry gets its response
            // instead of applying it twice.
            if error.code == .unavailable { throw RaftNodeError.notLeader(leader: noNode) }
            throw RaftNodeError.timeout
        }
    }
}
