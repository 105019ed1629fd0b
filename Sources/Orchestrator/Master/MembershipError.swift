import GRPCCore
import Raft

/// Why a membership request failed, in terms every front end maps: REST status, gRPC code (between
/// masters and to etcd clients).
public struct MembershipError: Error, Sendable, Equatable, APIErrorConvertible, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Bad input: 400, INVALID_ARGUMENT.
        case invalid
        /// The cluster's state forbids it now (another change in progress, a learner not caught
        /// up, an address already a member): 409, FAILED_PRECONDITION.
        case conflict
        /// No such member: 404, NOT_FOUND.
        case notFound
        /// No leader, or it did not answer in time: 503, UNAVAILABLE. Retrying may succeed.
        case unavailable
    }

    public var kind: Kind
    /// The REST error code (`change_in_progress`, `member_exists`, ...).
    public var code: String
    public var message: String

    public init(_ kind: Kind, _ code: String, _ message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public var apiError: APIError {
        let status = switch kind {
        case .invalid: 400
        case .conflict: 409
        case .notFound: 404
        case .unavailable: 503
        }
        return APIError(status: status, code: code, message: message)
    }

    var rpcCode: RPCError.Code {
        switch kind {
        case .invalid: .invalidArgument
        case .conflict: .failedPrecondition
        case .notFound: .notFound
        case .unavailable: .unavailable
        }
    }

    /// The error as it travels between masters (the REST code rides in metadata).
    var rpcError: RPCError {
        RPCError(code: rpcCode, message: message, metadata: ["membership-error": .string(code)])
    }

    /// Back from `rpcError`; an RPC failure without our metadata (no connection) is `unavailable`.
    init(_ error: RPCError) {
        let code = error.metadata[stringValues: "membership-error"].first { _ in true }
        switch error.code {
        case .invalidArgument: self.init(.invalid, code ?? "invalid_field", error.message)
        case .failedPrecondition: self.init(.conflict, code ?? "conflict", error.message)
        case .notFound: self.init(.notFound, code ?? "not_found", error.message)
        default: self.init(.unavailable, code ?? "no_leader", "the cluster did not answer: \(error.message)")
        }
    }

    /// A Raft node's refusal.
    init(_ error: any Error) {
        switch error {
        case let error as MembershipError:
            self = error
        case RaftNodeError.rejected(let why) where why.contains("in progress"):
            self.init(.conflict, "change_in_progress", "another membership change is in progress; try again once it is applied")
        case RaftNodeError.rejected(let why):
            self.init(.invalid, "invalid_member_change", why)
        case RaftNodeError.notLeader:
            self.init(.unavailable, "no_leader", "leadership changed during the request; try again")
        default:
            self.init(.unavailable, "unavailable", "the membership change did not complete: \(error)")
        }
    }
}
