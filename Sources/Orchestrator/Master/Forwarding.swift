import ClusterModel
import ClusterProto
import ClusterSecurity
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Store
import Synchronization

/// Serves `orchestrator.v1.Masters/Forward`: a follower hands the leader a store command.
struct ForwardService: Orchestrator_V1_Masters.SimpleServiceProtocol {
    /// Only masters forward writes: any other caller could run any store command.
    let authorization: CallerAuthorization
    let handle: @Sendable (Command) async throws -> Response
    /// Runs the commands of one ForwardBatch call together (`RaftStore.handleForwarded(batch:)`).
    let handleBatch: @Sendable ([Command]) async -> [Result<Response, any Error>]
    /// `Masters/Membership`, answered by the master once it is built.
    let membership: MembershipHandler

    /// - Parameter handleBatch: runs one ForwardBatch call's commands; by default each through
    ///   `handle`, concurrently.
    init(authorization: CallerAuthorization, handle: @escaping @Sendable (Command) async throws -> Response,
         handleBatch: (@Sendable ([Command]) async -> [Result<Response, any Error>])? = nil, membership: MembershipHandler) {
        self.authorization = authorization
        self.handle = handle
        self.handleBatch = handleBatch ?? { commands in
            await withTaskGroup(of: (Int, Result<Response, any Error>).self) { group in
                for (i, command) in commands.enumerated() {
                    group.addTask {
                        do { return (i, .success(try await handle(command))) } catch { return (i, .failure(error)) }
                    }
                }
                var results = [Result<Response, any Error>](repeating: .failure(RaftNodeError.timeout), count: commands.count)
                for await (i, result) in group { results[i] = result }
                return results
            }
        }
        self.membership = membership
    }

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
    /// The most commands one ForwardBatch call may carry. A follower's `ForwardBatcher` sends at
    /// most `ForwardBatcher.defaultMaxCommands`; the leader holds every command of a call and its
    /// answer until the last is applied, so it refuses more rather than trust the caller.
    static let maxBatchCommands = 4 * ForwardBatcher.defaultMaxCommands

    /// Commands in one call from one follower: proposed together (so they join one append), each
    /// answered on its own, in order.
    func forwardBatch(request: Orchestrator_V1_ForwardBatchRequest, context: ServerContext) async throws -> Orchestrator_V1_ForwardBatchResponse {
        try authorization.caller(context, mustBe: [.master])
        guard request.commands.count <= Self.maxBatchCommands else {
            throw RPCError(code: .invalidArgument,
                           message: "\(request.commands.count) commands in one ForwardBatch call; at most \(Self.maxBatchCommands)")
        }
        let commands: [Command]
        do {
            commands = try request.commands.map { try Command(decoding: Array($0)) }
        } catch {
            throw RPCError(code: .invalidArgument, message: "malformed command: \(error)")
        }
        let results = await handleBatch(commands).map { result -> Orchestrator_V1_ForwardResult in
            switch result {
            case .success(let response):
                return .with { $0.response = Data(response.encoded()) }
            case .failure(let error):
                // As Forward reports it: a Raft error by its code; anything else as a timeout
                // (the follower cannot tell whether it applied).
                let raft = error as? RaftNodeError ?? .timeout
                return .with {
                    $0.raftError = ForwardErrorCode(raft).rawValue
                    $0.message = (error as? RaftNodeError)?.description ?? "\(error)"
                }
            }
        }
        return .with { $0.results = results }
    }

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

/// The follower side: `RaftStore.Forward` over gRPC to the leader's rpc address, concurrent
/// writes sharing calls (`ForwardBatcher`, one per leader address).
final class ForwardClient: Sendable {
    let clients: PeerClients
    /// The rpc address of a member, as the current membership says.
    let address: @Sendable (NodeID) -> HostPort?
    private let batchers = Mutex<[HostPort: ForwardBatcher]>([:])
    /// Leaders that answered ForwardBatch with UNIMPLEMENTED (older masters): one call per command.
    private let singleOnly = Mutex<Set<HostPort>>([])

    /// How long one call may take before its writes fail with `.timeout` (the leader may or may
    /// not have applied them; RaftStore does not retry a timeout).
    let callTimeout: Duration

    init(clients: PeerClients, callTimeout: Duration = .seconds(10), address: @escaping @Sendable (NodeID) -> HostPort?) {
        self.clients = clients
        self.callTimeout = callTimeout
        self.address = address
    }

    func forward(to leader: NodeID, _ command: Command) async throws -> Response {
        guard let address = address(leader) else { throw RaftNodeError.notLeader(leader: noNode) }
        let batcher = batchers.withLock { batchers in
            if let batcher = batchers[address] { return batcher }
            let batcher = ForwardBatcher { [weak self] commands in
                guard let self else { return commands.map { _ in .failure(RaftNodeError.notLeader(leader: noNode)) } }
                return await self.send(commands, to: address)
            }
            batchers[address] = batcher
            return batcher
        }
        return try await batcher.forward(command)
    }

    /// One call for `commands`: Forward for one (or for a leader too old for ForwardBatch),
    /// ForwardBatch for several.
    private func send(_ commands: [ForwardBatcher.EncodedCommand], to address: HostPort) async -> [Result<Response, any Error>] {
        let stub: Orchestrator_V1_Masters.Client<HTTP2ClientTransport.Posix>
        do {
            stub = Orchestrator_V1_Masters.Client(wrapping: try clients.client(for: address))
        } catch {
            return commands.map { _ in .failure(RaftNodeError.notLeader(leader: noNode)) }
        }
        var options = CallOptions.defaults
        options.timeout = callTimeout
        if commands.count > 1 && !singleOnly.withLock({ $0.contains(address) }) {
            // Every response of the batch in one message: allow what the commands' own limits allow.
            options.maxResponseMessageBytes = 64 << 20
            do {
                let reply = try await stub.forwardBatch(.with { $0.commands = commands.map { Data($0.bytes) } }, options: options)
                guard reply.results.count == commands.count else {
                    return commands.map { _ in .failure(RaftNodeError.timeout) }
                }
                return reply.results.map(Self.result)
            } catch let error as RPCError where error.code == .unimplemented {
                singleOnly.withLock { _ = $0.insert(address) }
            } catch {
                let failure = Self.failure(error)
                return commands.map { _ in .failure(failure) }
            }
        }
        let singleOptions = options
        return await withTaskGroup(of: (Int, Result<Response, any Error>).self) { group in
            for (i, command) in commands.enumerated() {
                group.addTask {
                    do {
                        let reply = try await stub.forward(.with { $0.command = Data(command.bytes) }, options: singleOptions)
                        return (i, Result { try Response(decoding: Array(reply.response)) })
                    } catch {
                        return (i, .failure(Self.failure(error)))
                    }
                }
            }
            var results = Array(repeating: Result<Response, any Error>.failure(RaftNodeError.timeout), count: commands.count)
            for await (i, result) in group { results[i] = result }
            return results
        }
    }

    private static func result(_ result: Orchestrator_V1_ForwardResult) -> Result<Response, any Error> {
        if result.raftError.isEmpty {
            return Result { try Response(decoding: Array(result.response)) }
        }
        let code = ForwardErrorCode(rawValue: result.raftError)
        return .failure(code?.error(message: result.message) ?? RaftNodeError.timeout)
    }

    /// What a broken call means to the caller (RaftStore).
    private static func failure(_ error: any Error) -> any Error {
        guard let error = error as? RPCError else { return RaftNodeError.timeout }
        if let code = error.metadata[stringValues: "raft-error"].first(where: { _ in true }), let known = ForwardErrorCode(rawValue: code) {
            return known.error(message: error.message)
        }
        // The leader could not be reached, or the call broke after it was sent. Either way the
        // caller (RaftStore) finds the current leader and sends the command again under the
        // same request id: if the first one reached the log, the retry gets its response
        // instead of applying it twice.
        if error.code == .unavailable { return RaftNodeError.notLeader(leader: noNode) }
        return RaftNodeError.timeout
    }
}
