import ClusterModel
import Logging
import Raft
import Store
import Synchronization

/// Who leads, as the loop needs to know it: the built-in store's Raft role, or an election held in
/// an external etcd.
public protocol Leadership: Sendable {
    /// Whether this master leads now, and a number that changes at every new leadership (the
    /// Raft term, or the etcd election key's revision).
    func current() async -> (isLeader: Bool, term: UInt64)
}

/// The leader's work: scheduling rounds and reconcile passes, run only while this master leads.
///
/// A round runs as soon as something it depends on changes (the ``ClusterCache`` that follows the
/// task and node records marks the state dirty) and at least every `period`, since time alone also
/// makes work (a restart backoff ends, a node's heartbeats stop). Rounds read the cache and commit
/// with compare-and-swap, so neither a lagging copy nor two masters that briefly both believe they
/// lead can over-commit a node.
public final class LeaderLoop: Sendable {
    public struct Options: Sendable {
        public var period: Duration = .seconds(1)
        /// The longest the loop sleeps when no change wakes it (it also re-checks leadership).
        public var poll: Duration = .milliseconds(100)
        /// After a round that had tasks to place and placed none, the next one waits at least this
        /// long, or as long as that round took if longer, whatever changes meanwhile (the periodic
        /// round still runs). A backlog that cannot be placed (every node full or cordoned) is
        /// read and sorted whole by every round, and while tasks arrive every arrival asks for
        /// one: back to back, such rounds took a core of a 2-core machine from the masters taking
        /// the submissions.
        public var idleRoundGap: Duration = .milliseconds(50)
        public var health = HealthPolicy()
        /// Store history kept for watches and event streams, in revisions: the leader compacts
        /// older history every `compactionInterval` (etcd's revision-based auto-compaction), or
        /// the store's memory would grow with every write ever made. nil: the leader never
        /// compacts (an external etcd shared with others, unless `--etcd-compaction-retention`).
        public var compactionRetention: Int64? = 20_000
        public var compactionInterval: Duration = .seconds(30)
        /// Ended tasks are deleted once they have been kept this long (nil: kept forever), checked
        /// every `retentionInterval`.
        public var taskRetention: TaskRetention? = TaskRetention()
        /// Down nodes are removed once silent this long (nil: kept), checked with the retention.
        public var nodePurge: NodePurge? = NodePurge()
        public var retentionInterval: Duration = .seconds(10)
        /// Seed of the generator behind restart-backoff jitter: fixed in tests, so a run replays;
        /// drawn once from the system generator in production, so masters do not jitter alike.
        public var jitterSeed = UInt64.random(in: .min ... .max)
        public init() {}
    }

    let repository: ClusterRepository
    let leadership: any Leadership
    let masterID: String
    let defaultAlgorithm: SchedulingAlgorithm
    let options: Options
    /// The wall clock (milliseconds since the epoch), for what records say: update times, backoffs.
    let now: @Sendable () -> Int64
    /// A monotonic clock (milliseconds), for everything this loop times itself: its periods and
    /// node health (`HeartbeatObservations`), which no wall-clock step may move.
    let monotonic: @Sendable () -> Int64
    let logger: Logger
    let dirty = Atomic<Bool>(true)
    let wake = WakeSignal()
    /// Task and node records in memory, following the store (see ``ClusterCache``).
    let cache: ClusterCache
    /// Whether this loop runs `cache` itself, while leading only. A cache given at init is run by
    /// its owner (the master runs one on every master, for `/metrics` and assignment streams) and
    /// tells the loop of changes through `cacheChanged()`.
    let ownsCache: Bool
    /// Rounds run and tasks placed, for `/metrics`.
    public let placements = Atomic<Int>(0)
    public let rounds = Atomic<Int>(0)
    /// Transactions that committed placements, and those refused because a task or node changed
    /// since the round read it (their tasks are decided again): many refusals per commit mean the
    /// rounds fall back to placing tasks one at a time.
    public let placementCommits = Atomic<Int>(0)
    public let placementConflicts = Atomic<Int>(0)
    /// Ended tasks deleted past their retention.
    public let deletedTasks = Atomic<Int>(0)
    /// Times the leader considered compacting (every `compactionInterval` while leading, whether
    /// or not it compacted), and times it compacted.
    public let compactionChecks = Atomic<Int>(0)
    public let compactions = Atomic<Int>(0)

    public init(repository: ClusterRepository, leadership: any Leadership, masterID: String, defaultAlgorithm: SchedulingAlgorithm,
                options: Options = Options(), now: @escaping @Sendable () -> Int64,
                monotonic: @escaping @Sendable () -> Int64 = LeaderLoop.monotonicMilliseconds, logger: Logger,
                cache: ClusterCache? = nil) {
        self.cache = cache ?? ClusterCache()
        self.ownsCache = cache == nil
        self.repository = repository
        self.leadership = leadership
        self.masterID = masterID
        self.defaultAlgorithm = defaultAlgorithm
        self.options = options
        self.now = now
        self.monotonic = monotonic
        self.logger = logger
    }

    /// Milliseconds of the system's monotonic clock.
    public static func monotonicMilliseconds() -> Int64 {
        let elapsed = ContinuousClock.now - epoch
        return elapsed.wholeMilliseconds
    }

    private static let epoch = ContinuousClock.now

    /// Runs until the calling task is cancelled.
    public func run() async {
        await loop()
    }

    /// Starts following the store into the cache (while leading only: followers would spend their
    /// CPU decoding every task write for nothing). Waits for a previous follower to finish first,
    /// so two never write the cache at once.
    private func startCache(replacing previous: Task<Void, Never>?) async -> Task<Void, Never>? {
        previous?.cancel()
        await previous?.value
        guard ownsCache else { return nil }
        return Task {
            await self.cache.run(repository: self.repository) { self.cacheChanged() }
        }
    }

    /// Something a round depends on changed: run one soon. The `onChange` of a cache given at init.
    public func cacheChanged() {
        dirty.store(true, ordering: .relaxed)
        wake.signal()
    }

    private func loop() async {
        var scheduler = Scheduler(defaultAlgorithm: defaultAlgorithm)
        var term: UInt64?
        var observations = HeartbeatObservations()
        var lastSchedule: Int64 = .min / 2
        // When the next round may run on a change (see `Options.idleRoundGap`).
        var roundAllowedAt: Int64 = .min / 2
        let idleGapMs = options.idleRoundGap.wholeMilliseconds
        var lastReconcile: Int64 = .min / 2
        var lastCompaction: Int64 = .min / 2
        var lastPurge: Int64 = .min / 2
        let compactionMs = options.compactionInterval.wholeMilliseconds
        let retentionCheckMs = options.retentionInterval.wholeMilliseconds
        var random = SplitMix64(seed: options.jitterSeed)
        let periodMs = options.period.wholeMilliseconds
        var follower: Task<Void, Never>?
        var retentionPass: Task<Void, Never>?
        defer {
            follower?.cancel()
            retentionPass?.cancel()
        }
        while !Task.isCancelled {
            let status = await leadership.current()
            if !status.isLeader {
                if term != nil { logger.info("no longer leading") }
                term = nil
                follower?.cancel()
                retentionPass?.cancel()
                await wake.wait(timeout: options.poll)
                continue
            }
            if term != status.term {
                term = status.term
                follower = await startCache(replacing: follower)
                retentionPass?.cancel()
                if let retention = options.taskRetention {
                    retentionPass = Task { await self.keepRetention(retention) }
                }
                observations = HeartbeatObservations()  // a new leader counts every node's silence afresh
                scheduler = Scheduler(defaultAlgorithm: defaultAlgorithm)
                dirty.store(true, ordering: .relaxed)
                logger.notice("leading", metadata: ["term": "\(status.term)"])
                do {
                    try await repository.announceLeader(.init(id: masterID, term: status.term))
                } catch {
                    logger.warning("could not record the leader: \(error)")
                }
            }
            let time = monotonic()
            if (time >= roundAllowedAt && dirty.exchange(false, ordering: .relaxed)) || time - lastSchedule >= periodMs {
                lastSchedule = time
                do {
                    let result = try await SchedulingRound(repository: repository, cache: cache).run(&scheduler, now: now())
                    rounds.add(1, ordering: .relaxed)
                    placements.add(result.placed, ordering: .relaxed)
                    placementCommits.add(result.commits, ordering: .relaxed)
                    placementConflicts.add(result.conflicts, ordering: .relaxed)
                    if result.conflicts > 0 { dirty.store(true, ordering: .relaxed) }
                    let end = monotonic()
                    let stuck = result.placed == 0 && result.unschedulable + result.parked > 0 && result.conflicts == 0
                    roundAllowedAt = stuck ? end + max(idleGapMs, end - time) : .min / 2
                } catch {
                    logger.warning("scheduling round failed: \(error)")
                }
            }
            if time - lastReconcile >= periodMs {
                lastReconcile = time
                do {
                    let result = try await ReconcileRound(repository: repository, policy: options.health, cache: cache)
                        .run(now: now(), monotonicNow: time, observations: &observations, jitter: { Double.random(in: 0..<1, using: &random) })
                    for (node, state) in result.nodeChanges { logger.notice("node \(node) is \(state.rawValue)") }
                    for why in result.refused { logger.error("reconcile action refused: \(why)") }
                } catch {
                    logger.warning("reconcile pass failed: \(error)")
                }
            }
            if time - lastPurge >= retentionCheckMs {
                lastPurge = time
                if let purge = options.nodePurge { await removeGoneNodes(purge) }
            }
            if time - lastCompaction >= compactionMs {
                lastCompaction = time
                await compact()
            }
            if !dirty.load(ordering: .relaxed) {
                await wake.wait(timeout: options.poll)
            } else {
                // A change waits for the gap after a round that placed nothing.
                let wait = roundAllowedAt - monotonic()
                if wait > 0 { try? await Task.sleep(for: .milliseconds(min(wait, options.poll.wholeMilliseconds))) }
            }
        }
    }

    /// Deletes ended tasks past their retention while this master leads, on a cadence of its own: a
    /// pass, then the next `retentionInterval` later, or a second later when the pass was full (more
    /// may be waiting). Not in the loop, nor started by it: a scheduling round that meets conflicts
    /// can take seconds, and passes started once per round deleted fewer tasks than ended under
    /// churn (BENCHMARKS.md, "Bounded store under churn"). Cancelled when leadership is lost.
    private func keepRetention(_ retention: TaskRetention) async {
        let intervalMs = options.retentionInterval.wholeMilliseconds
        while !Task.isCancelled {
            // The cache this leader just started is not a view of the store until it has read it
            // once: a pass over it then would find nothing and wait a whole interval.
            let pauseMs: Int64
            if cache.isSynced {
                pauseMs = await deleteExpired(retention) ? min(1_000, intervalMs) : intervalMs
            } else {
                pauseMs = min(50, intervalMs)
            }
            do {
                try await Task.sleep(for: .milliseconds(pauseMs))
            } catch {
                return
            }
        }
    }

    /// One pass of `TaskRetention` over the cached tasks, in transactions of `batchLimit`. A batch
    /// that lost a race (a task changed since the cache read it) is left for the next pass. Its
    /// deletions race nothing the loop writes: only ended tasks go, and the loop writes pending,
    /// placed and running ones.
    /// Returns whether the pass was full, so more may be waiting.
    private func deleteExpired(_ retention: TaskRetention) async -> Bool {
        let expired = retention.expired(cache.tasks(), now: now())
        guard !expired.isEmpty else { return false }
        var deleted = 0
        for batch in retention.batches(expired) {
            if Task.isCancelled { break }  // no longer leading
            do {
                if try await repository.deleteBatch(Array(batch)) { deleted += batch.count }
            } catch {
                logger.warning("deleting ended tasks failed: \(error)")
                break
            }
        }
        if deleted > 0 {
            deletedTasks.add(deleted, ordering: .relaxed)
            logger.info("deleted \(deleted) ended tasks past their retention")
        }
        return expired.count == retention.passLimit
    }

    /// Removes the nodes `purge` selects; one that changed meanwhile (back up, or given a task)
    /// is refused by the repository and stays.
    private func removeGoneNodes(_ purge: NodePurge) async {
        let down = cache.nodes().filter { $0.info.state == .down }
        guard !down.isEmpty else { return }
        do {
            let heartbeats = try await repository.heartbeats()
            for id in purge.expired(down, heartbeats: heartbeats, now: now()) {
                do {
                    _ = try await repository.removeNode(id, attempts: 1)
                    logger.notice("removed node \(id): down longer than \(purge.afterMs / 1000) s")
                } catch {
                    logger.info("node \(id) was not removed: \(error)")
                }
            }
        } catch {
            logger.warning("removing long-down nodes failed: \(error)")
        }
    }

    private func compact() async {
        compactionChecks.add(1, ordering: .relaxed)
        guard let retention = options.compactionRetention else { return }
        do {
            let revision = try await repository.store.range(RangeRequest(key: ClusterRepository.leaderKey, countOnly: true), consistency: .serializable).revision
            let target = revision - retention
            guard target > 0 else { return }
            try await repository.store.compact(revision: target)
            compactions.add(1, ordering: .relaxed)
            logger.info("compacted store history", metadata: ["revision": "\(target)"])
        } catch StoreError.compacted {
            // Already compacted at least this far.
        } catch {
            logger.warning("compaction failed: \(error)")
        }
    }
}
