import Foundation
import Logging
import Store
import Synchronization

/// Leader election among masters that keep their state in an external etcd: the master that
/// creates the election key, attached to its lease, leads until its lease lapses (etcd's own
/// `concurrency.Election` pattern). A master steps down as soon as one keep-alive fails, before
/// its lease can expire, so two masters never both believe they lead for long; compare-and-swap
/// on every record covers the remaining window.
final class EtcdLeadership: Leadership {
    static let electionKey = Array("/orchestrator/election".utf8)
    let store: any ClusterStore
    let masterID: String
    let ttl: Int64
    let logger: Logger
    private let state = Mutex<(isLeader: Bool, term: UInt64)>((false, 0))
    /// Set by `resign()`: this master stops campaigning (it is stopping).
    private let resigned = Atomic<Bool>(false)

    init(store: any ClusterStore, masterID: String, ttl: Int64 = 5, logger: Logger) {
        self.store = store
        self.masterID = masterID
        self.ttl = ttl
        self.logger = logger
    }

    func current() async -> (isLeader: Bool, term: UInt64) { state.withLock { $0 } }

    func run() async {
        while !Task.isCancelled && !resigned.load(ordering: .relaxed) {
            do {
                try await campaign()
            } catch {
                logger.warning("leader election: \(error)")
            }
            state.withLock { $0.isLeader = false }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    /// One attempt: wins the key and holds it while the lease lives, or returns.
    private func campaign() async throws {
        let lease = try await store.grantLease(ttl: ttl, id: 0)
        defer { Task { [store] in try? await store.revokeLease(lease.id) } }
        let key = Self.electionKey
        let r = try await store.txn(TxnRequest(
            compares: [Compare(key: key, .equal, .createRevision(0))],
            success: [.put(PutRequest(key: key, value: Array(masterID.utf8), lease: lease.id))]))
        guard r.succeeded else { return }
        state.withLock { $0 = (true, UInt64(r.revision)) }
        logger.notice("elected through etcd", metadata: ["revision": "\(r.revision)"])
        while !Task.isCancelled && !resigned.load(ordering: .relaxed) {
            try await Task.sleep(for: .milliseconds(Int64(ttl) * 1000 / 3))
            _ = try await store.keepAlive(lease.id)
        }
    }

    /// Gives up leadership for good (a stopping master): deletes the election key if this master
    /// holds it, so another master wins at its next attempt instead of after the lease's TTL.
    func resign() async {
        resigned.store(true, ordering: .relaxed)
        let key = Self.electionKey
        let wasLeader = state.withLock { s -> Bool in
            defer { s.isLeader = false }
            return s.isLeader
        }
        guard wasLeader else { return }
        _ = try? await store.txn(TxnRequest(
            compares: [Compare(key: key, .equal, .value(Array(masterID.utf8)))],
            success: [.deleteRange(DeleteRangeRequest(key: key))]))
        logger.notice("resigned leadership in etcd")
    }
}
