import GRPCCore
import Raft
import Store

/// Why the etcd API refused or failed a request. It travels as the `cause` of the `RPCError` the
/// client receives, whose code and message are etcd's own (rpctypes), so etcdctl prints against
/// our masters what it prints against etcd.
public enum EtcdAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The store refused the request; nothing changed.
    case store(StoreError)
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    case keyNotFound
    /// `ignore_value` together with a value.
    case valueProvided
    /// `ignore_lease` together with a lease.
    case leaseProvided
    /// More operations in one txn branch than `limit`.
    case tooManyOperations(limit: Int)
    /// A txn nested in a txn (etcd 3.3+ allows it; the built-in store does not).
    case nestedTxn
    /// A sort order or target outside etcd's enums.
    case invalidSortOption
    /// A watch id the client chose is already in use on its stream.
    case duplicateWatchID(Int64)
    /// The stream's or the member's limit of open watches is reached (`why` says which).
    case tooManyWatches(String)
    /// The cluster cannot serve the request now (no leader, timeout, stopping); `reason` is etcd's
    /// wording. A write that fails so may or may not have been applied, as with etcd.
    case unavailable(reason: String)
    /// A method of etcd's API this server does not implement.
    case unimplemented(method: String, reason: String)
    /// Anything else; `reason` describes it.
    case internalError(reason: String)

    /// Maps what a store call threw: store refusals and Raft failures to their etcd equivalents.
    public init(_ error: any Error) {
        switch error {
        case let error as EtcdAPIError: self = error
        case let error as StoreError: self = .store(error)
        case let error as RaftNodeError:
            switch error {
            case .notLeader: self = .unavailable(reason: "etcdserver: no leader")
            case .proposalDropped: self = .unavailable(reason: "etcdserver: request timed out, possibly due to previous leader failure")
            case .timeout: self = .unavailable(reason: "etcdserver: request timed out")
            case .stopped: self = .unavailable(reason: "etcdserver: server stopped")
            case .rejected(let why): self = .internalError(reason: "etcdserver: \(why)")
            case .storage(let why): self = .internalError(reason: "etcdserver: storage failure: \(why)")
            }
        case let error as RPCError:
            // Forwarding to the leader runs over gRPC between masters: keep its code.
            self = error.code == .unavailable || error.code == .deadlineExceeded
                ? .unavailable(reason: "etcdserver: leader unreachable: \(error.message)")
                : .internalError(reason: "etcdserver: \(error.message)")
        case is CancellationError: self = .unavailable(reason: "etcdserver: request cancelled")
        default: self = .internalError(reason: "etcdserver: \(error)")
        }
    }

    /// The gRPC status code etcd uses for this error.
    public var code: RPCError.Code {
        switch self {
        case .store(let error):
            switch error {
            case .emptyKey, .requestTooLarge, .invalidRange, .duplicateKey: .invalidArgument
            case .compacted, .futureRevision: .outOfRange
            case .leaseNotFound: .notFound
            case .leaseExists: .failedPrecondition
            case .invalidTTL: .outOfRange
            case .malformed: .internalError
            case .noSpace: .resourceExhausted
            }
        case .keyNotFound, .valueProvided, .leaseProvided, .tooManyOperations, .nestedTxn, .invalidSortOption,
             .duplicateWatchID:
            .invalidArgument
        case .unavailable: .unavailable
        case .tooManyWatches: .resourceExhausted
        case .unimplemented: .unimplemented
        case .internalError: .internalError
        }
    }

    /// etcd's message for this error (etcd's rpctypes wording where etcd has one).
    public var description: String {
        switch self {
        case .store(let error):
            switch error {
            case .emptyKey: "etcdserver: key is not provided"
            case .requestTooLarge: "etcdserver: request is too large"
            case .invalidRange: "etcdserver: range end sorts before the key"
            case .compacted: "etcdserver: mvcc: required revision has been compacted"
            case .futureRevision: "etcdserver: mvcc: required revision is a future revision"
            case .leaseNotFound: "etcdserver: requested lease not found"
            case .leaseExists: "etcdserver: lease already exists"
            case .invalidTTL: "etcdserver: too large lease TTL"
            case .duplicateKey: "etcdserver: duplicate key given in txn request"
            case .malformed(let why): "etcdserver: internal error: \(why)"
            case .noSpace: "etcdserver: mvcc: database space exceeded"
            }
        case .keyNotFound: "etcdserver: key not found"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .tooManyOperations: "etcdserver: too many operations in txn request"
        case .nestedTxn: "etcdserver: nested txn is not supported by this server"
        case .invalidSortOption: "etcdserver: invalid sort option"
        case .duplicateWatchID(let id): "etcdserver: duplicate watch ID \(id) provided on the watch stream"
        case .unavailable(let reason): reason
        case .tooManyWatches(let why): "etcdserver: too many watches: \(why); cancel some or use another stream or member"
        case .unimplemented(let method, let reason): "etcdserver: \(method) is not implemented by this server: \(reason)"
        case .internalError(let reason): reason
        }
    }

    /// The status the client receives, carrying this error as its cause.
    public var rpcError: RPCError {
        RPCError(code: code, message: description, cause: self)
    }
}

/// Runs a handler body, turning whatever it throws into etcd's gRPC status.
@inline(__always)
func etcdCall<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        throw EtcdAPIError(error).rpcError
    }
}
