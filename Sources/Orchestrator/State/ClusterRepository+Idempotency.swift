import ClusterModel
import Crypto
import Foundation
import Store

/// `POST /api/v1/tasks` with an `Idempotency-Key` header: a client that retries a submission it
/// did not hear back about (a timeout, a 503, a dropped connection) gets the task its first attempt
/// created instead of a second one. As Stripe's API does: the key names one request; the same key
/// with a different body is refused.
public struct IdempotentRequest: Sendable, Hashable {
    /// The client's key, as sent.
    public let key: String
    /// SHA-256 of the request body, to refuse the key's reuse for another request.
    public let bodyDigest: String

    /// Why a header value is not a usable key.
    public enum Invalid: Error, Equatable {
        case empty, tooLong(Int), notPrintable
    }

    /// The longest key accepted, in bytes (Stripe's limit).
    public static let maxKeyBytes = 255

    /// - Throws: `Invalid` unless `key` is 1-255 bytes of printable ASCII.
    public init(key: String, body: [UInt8]) throws(Invalid) {
        let bytes = Array(key.utf8)
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Self.maxKeyBytes else { throw .tooLong(bytes.count) }
        guard bytes.allSatisfy({ (0x21...0x7e).contains($0) }) else { throw .notPrintable }
        self.key = key
        self.bodyDigest = SHA256.hash(data: body).hex
    }

    /// Where the key's record lives: its digest, so any key makes a valid store key of fixed length.
    var recordKey: [UInt8] { ClusterRepository.idempotencyPrefix + Array(SHA256.hash(data: Array(key.utf8)).hex.utf8) }
}

/// What the store keeps per key: the task the first request created and that request's digest.
struct IdempotencyRecord: Codable, Sendable {
    var taskID: String
    var bodyDigest: String

    enum CodingKeys: String, CodingKey {
        case taskID = "task_id", bodyDigest = "body_sha256"
    }
}

extension ClusterRepository {
    public static let idempotencyPrefix = Array("/orchestrator/idempotency/".utf8)

    /// Keys are kept at least 24 h (the API promises it): each record is attached to the lease of
    /// the hour it was written in, which lives 25 h, so one lease per hour expires a whole hour's
    /// records at once instead of one lease per request.
    static let idempotencyLeaseTTL: Int64 = 25 * 3600

    /// The lease of the hour `nowMs` falls in. Ids far above the sequential ones the store hands
    /// out for grants with id 0, and the same on every master, so two masters in the same hour
    /// share one lease (a second grant finds it exists).
    static func idempotencyLease(at nowMs: Int64) -> LeaseID {
        0x4944_0000_0000_0000 | (nowMs / 3_600_000)
    }

    /// The outcome of an idempotent create.
    public enum CreateOutcome: Sendable {
        /// The task was created now.
        case created(TaskRecord)
        /// An earlier request with the same key created this task.
        case replayed(TaskRecord)
    }

    /// Creates `task` unless `request`'s key already created one, in one transaction: the task and
    /// the key's record are written together or not at all.
    ///
    /// - Throws: `RepositoryError.idempotencyKeyReused` if the key came with another body;
    ///   `RepositoryError.notFound` if the task it created is gone (deleted after it finished).
    public func create(_ task: TaskRecord, idempotent request: IdempotentRequest, nowMs: Int64) async throws -> CreateOutcome {
        let lease = Self.idempotencyLease(at: nowMs)
        let record = try JSONEncoder().encode(IdempotencyRecord(taskID: task.id, bodyDigest: request.bodyDigest))
        let taskKey = Self.taskKey(task.id)
        let txn = TxnRequest(
            compares: [Compare(key: request.recordKey, .equal, .createRevision(0)), Compare(key: taskKey, .equal, .createRevision(0))],
            success: [.put(PutRequest(key: taskKey, value: Self.encode(task))),
                      .put(PutRequest(key: request.recordKey, value: Array(record), lease: lease))],
            failure: [.range(RangeRequest(key: request.recordKey))])
        let response: TxnResponse
        do {
            response = try await store.txn(txn)
        } catch StoreError.leaseNotFound {
            // The first idempotent request of this hour: make the hour's lease, then write.
            try await grantIdempotencyLease(lease)
            response = try await store.txn(txn)
        }
        if response.succeeded {
            var stored = task
            stored.markStored(revision: response.revision)
            return .created(stored)
        }
        guard case .range(let range)? = response.responses.first, let kv = range.kvs.first else {
            // The key is free, so the task id was taken: ids are unique, this is a bug.
            throw RepositoryError.alreadyExists(task.id)
        }
        let earlier = try JSONDecoder().decode(IdempotencyRecord.self, from: Data(kv.value))
        guard earlier.bodyDigest == request.bodyDigest else { throw RepositoryError.idempotencyKeyReused(request.key) }
        guard let existing = try await readTask(earlier.taskID, consistency: .linearizable).task else {
            throw RepositoryError.notFound(earlier.taskID)
        }
        return .replayed(existing)
    }

    private func grantIdempotencyLease(_ id: LeaseID) async throws {
        do {
            _ = try await store.grantLease(ttl: Self.idempotencyLeaseTTL, id: id)
        } catch StoreError.leaseExists {
            // Another master granted it first.
        }
    }
}
