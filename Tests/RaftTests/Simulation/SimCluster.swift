@testable import Raft

/// A deterministic simulation of a Raft cluster in one thread: a seeded network that drops,
/// duplicates, delays, reorders and partitions messages; crashes and restarts from storage.
/// Invariants are checked after every step; a failure message names the seed that replays it.
struct SimCluster {
    struct Faults {
        var dropRate = 0.05
        var duplicateRate = 0.03
        var maxDelay = 6
        var crashRate = 0.002
        var partitionRate = 0.003
        var compactEvery: UInt64 = 40
        /// Chance that a leader crashes after sending its appends but before its own write.
        var crashBeforePersistRate = 0.01
        /// Chance per step of an unreachable notice about a peer that may well be alive.
        var spuriousUnreachableRate = 0.005
    }

    struct InFlight {
        var deliverAt: Int
        var message: Message
    }

    /// The applied commands of one server, as (index, term, data).
    struct Machine {
        var applied: [(index: UInt64, term: UInt64, data: [UInt8])] = []
        var lastIndex: UInt64 = 0

        func encoded() -> [UInt8] {
            var out: [UInt8] = []
            for a in applied {
                out += bytes(a.index) + bytes(a.term) + bytes(UInt64(a.data.count)) + a.data
            }
            return out
        }

        static func decode(_ b: [UInt8], lastIndex: UInt64) -> Machine {
            var m = Machine()
            var reader = ByteReader(b)
            while !reader.atEnd {
                let index = reader.u64(), term = reader.u64(), n = Int(reader.u64())
                m.applied.append((index, term, reader.take(n)))
            }
            m.lastIndex = lastIndex
            return m
        }
    }

    let seed: UInt64
    var rng: SplitMix64
    var faults: Faults
    let ids: [NodeID]
    var nodes: [NodeID: RawNode] = [:]
    var storages: [NodeID: MemoryLogStorage] = [:]
    var machines: [NodeID: Machine] = [:]
    var network: [InFlight] = []
    var now = 0
    var partitioned: Set<NodeID> = []
    var crashed: Set<NodeID> = []

    /// Every term's leader ever seen: at most one per term (Election Safety).
    var leaders: [UInt64: NodeID] = [:]
    /// The command applied at each index by anyone (State Machine Safety).
    var appliedAt: [UInt64: (term: UInt64, data: [UInt8])] = [:]
    /// Proposals a leader reported applied: they must survive everything (no lost writes).
    var acknowledged: [UInt64: [UInt8]] = [:]
    var proposalCounter: UInt64 = 0
    var pendingProposals: [UInt64: (term: UInt64, data: [UInt8], leader: NodeID)] = [:]
    var failure: String?

    init(seed: UInt64, size: Int = 3, faults: Faults = Faults(), preVote: Bool = true, checkQuorum: Bool = true) {
        self.seed = seed
        self.rng = SplitMix64(seed: seed)
        self.faults = faults
        self.ids = (1...UInt64(size)).map { $0 }
        for id in ids {
            storages[id] = MemoryLogStorage()
            machines[id] = Machine()
            start(id, preVote: preVote, checkQuorum: checkQuorum)
        }
    }

    func config(_ id: NodeID, preVote: Bool = true, checkQuorum: Bool = true) -> RaftConfig {
        var c = RaftConfig(id: id, seed: seed &+ id &* 7919 &+ UInt64(now))
        c.preVote = preVote
        c.checkQuorum = checkQuorum
        c.maxInflight = 4
        c.maxEntriesPerMessage = 8
        return c
    }

    mutating func start(_ id: NodeID, preVote: Bool = true, checkQuorum: Bool = true) {
        let persisted = try! storages[id]!.load()
        var machine = Machine()
        if !persisted.snapshot.isEmpty {
            machine = Machine.decode(persisted.snapshot.data, lastIndex: persisted.snapshot.metadata.index)
        }
        machines[id] = machine
        nodes[id] = RawNode(config: config(id, preVote: preVote, checkQuorum: checkQuorum), persisted: persisted, bootstrap: ids)
        process(id)
    }

    mutating func chance(_ p: Double) -> Bool {
        Double(rng.next() % 1_000_000) / 1_000_000 < p
    }

    mutating func pick<T>(_ xs: [T]) -> T {
        xs[Int(rng.next() % UInt64(xs.count))]
    }

    var leader: NodeID? {
        let live = ids.filter { !crashed.contains($0) && nodes[$0]?.raft.role == .leader }
        return live.max { nodes[$0]!.raft.term < nodes[$1]!.raft.term }
    }

    // MARK: - Ready processing: persist, send, apply, advance

    mutating func process(_ id: NodeID) {
        guard var node = nodes[id] else { return }
        var rounds = 0
        while node.hasReady && rounds < 100 {
            rounds += 1
            let ready = node.ready()
            for m in ready.messagesBeforePersist { send(m) }
            if ready.mustSync && !ready.messagesBeforePersist.isEmpty && canCrash && chance(faults.crashBeforePersistRate) {
                // The leader's appends left, its own write did not happen: it must not have
                // counted itself toward any quorum for those entries.
                crash(id)
                return
            }
            if ready.mustSync { try! storages[id]!.save(ready.persistBatch) }
            for m in ready.messages { send(m) }
            if let snap = ready.snapshot {
                machines[id] = Machine.decode(snap.data, lastIndex: snap.metadata.index)
                check(machine: id)
            }
            for e in ready.committedEntries {
                if e.kind == .confChange, let cc = ConfChange(decoding: e.data) {
                    node.applyConfChange(cc)
                }
                applyEntry(id, e, role: node.raft.role, term: node.raft.term)
            }
            node.advance(ready)
            if node.raft.role == .leader {
                let t = node.raft.term
                if let other = leaders[t], other != id {
                    fail("two leaders in term \(t): \(other) and \(id)")
                }
                leaders[t] = id
            }
            let m = machines[id]!
            if m.lastIndex >= node.raft.firstIndex - 1 + faults.compactEvery, node.raft.appliedIndex == m.lastIndex {
                if let snap = try? node.compact(data: m.encoded()) {
                    try! storages[id]!.save(PersistBatch(snapshot: snap))
                }
            }
        }
        nodes[id] = node
    }

    mutating func applyEntry(_ id: NodeID, _ e: Entry, role: Role, term: UInt64) {
        var m = machines[id]!
        guard e.index == m.lastIndex + 1 else {
            fail("node \(id) applied index \(e.index) after \(m.lastIndex)")
            return
        }
        m.lastIndex = e.index
        if e.kind == .normal && !e.data.isEmpty { m.applied.append((e.index, e.term, e.data)) }
        machines[id] = m
        if let seen = appliedAt[e.index] {
            if seen.term != e.term || seen.data != e.data {
                fail("state machine safety: index \(e.index) applied as term \(seen.term) and as term \(e.term) (node \(id))")
            }
        } else {
            appliedAt[e.index] = (e.term, e.data)
        }
        if let p = pendingProposals[e.index], p.leader == id {
            if p.term == e.term && p.data == e.data { acknowledged[e.index] = e.data }
            pendingProposals[e.index] = nil
        }
    }

    mutating func check(machine id: NodeID) {
        for a in machines[id]!.applied {
            if let seen = appliedAt[a.index], seen.term != a.term || seen.data != a.data {
                fail("snapshot of node \(id) disagrees at index \(a.index)")
            }
        }
    }

    mutating func send(_ m: Message) {
        if chance(faults.dropRate) { return }
        let delay = 1 + Int(rng.next() % UInt64(faults.maxDelay))
        network.append(InFlight(deliverAt: now + delay, message: m))
        if chance(faults.duplicateRate) {
            network.append(InFlight(deliverAt: now + delay + Int(rng.next() % 4), message: m))
        }
    }

    mutating func fail(_ why: String) {
        if failure == nil { failure = "seed \(seed), step \(now): \(why)" }
    }

    // MARK: - Steps

    /// One simulated time unit: deliver due messages (in random order), tick, maybe a fault, maybe
    /// a proposal.
    mutating func step(allowFaults: Bool = true, propose: Bool = true) {
        now += 1
        var due: [InFlight] = []
        network.removeAll { f in
            if f.deliverAt <= now { due.append(f); return true }
            return false
        }
        // Reorder what is due.
        for i in stride(from: due.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            due.swapAt(i, j)
        }
        for f in due {
            let m = f.message
            guard !crashed.contains(m.to), nodes[m.to] != nil else { continue }
            if partitioned.contains(m.to) != partitioned.contains(m.from) { continue }
            do {
                try nodes[m.to]!.step(m)
            } catch {
                fail("correct peer's message rejected: \(error) \(m.kind) from \(m.from)")
            }
            process(m.to)
        }
        if now % 3 == 0 {
            for id in ids where !crashed.contains(id) {
                nodes[id]!.tick()
                process(id)
            }
        }
        if allowFaults { injectFaults() }
        if propose, let l = leader, chance(0.3) {
            proposalCounter += 1
            let data = Array("cmd-\(proposalCounter)".utf8)
            if let index = try? nodes[l]!.propose([data]) {
                pendingProposals[index] = (nodes[l]!.raft.term, data, l)
            }
            process(l)
        }
    }

    mutating func injectFaults() {
        if chance(faults.crashRate) {
            let id = pick(ids)
            if crashed.contains(id) {
                crashed.remove(id)
                start(id)
            } else if canCrash {
                crash(id)
            }
        }
        if chance(faults.spuriousUnreachableRate) {
            // A connection blip: a live peer is reported unreachable.
            let (a, b) = (pick(ids), pick(ids))
            if a != b, !crashed.contains(a) {
                nodes[a]!.reportUnreachable(b)
                process(a)
            }
        }
        if chance(faults.partitionRate) {
            if partitioned.isEmpty {
                partitioned = [pick(ids)]
                if ids.count >= 5 && chance(0.5) { partitioned.insert(pick(ids)) }
            } else {
                partitioned = []
            }
        }
    }

    /// Whether another server may crash now (a minority stays down at most).
    var canCrash: Bool { crashed.count < (ids.count - 1) / 2 }

    mutating func crash(_ id: NodeID) {
        crashed.insert(id)
        nodes[id] = nil
        network.removeAll { $0.message.to == id }
        // Most peers notice the broken connection (the transport's unreachable notice).
        for other in ids where other != id && !crashed.contains(other) && chance(0.7) {
            nodes[other]!.reportUnreachable(id)
            process(other)
        }
    }

    /// Ends all faults and runs until every server applied the same log, or `limit` steps.
    mutating func heal(limit: Int = 3000) {
        partitioned = []
        for id in crashed { start(id) }
        crashed = []
        faults.dropRate = 0
        faults.duplicateRate = 0
        faults.crashBeforePersistRate = 0
        var steps = 0
        while steps < limit {
            step(allowFaults: false, propose: false)
            steps += 1
            if let l = leader, let lnode = nodes[l], lnode.raft.log.term(at: lnode.raft.commitIndex) == lnode.raft.term {
                let target = lnode.raft.lastIndex
                if ids.allSatisfy({ machines[$0]!.lastIndex == target && nodes[$0]!.raft.lastIndex == target }) { return }
            }
        }
        fail("cluster did not converge within \(limit) steps after healing: \(summary)")
    }

    var summary: String {
        ids.map { id in
            let r = nodes[id]!.raft
            return "[\(id) \(r.role) t\(r.term) lead \(r.leader) commit \(r.commitIndex) applied \(r.appliedIndex) machine \(machines[id]!.lastIndex) last \(r.lastIndex) first \(r.firstIndex) voters \(r.confState.voters) prog \(r.progress.mapValues { "\($0.state) m\($0.match) n\($0.next) p\($0.isPaused)" })]"
        }.joined(separator: " ")
    }

    /// Log Matching: if two logs hold an entry with the same index and term, they are identical up to it.
    mutating func checkLogMatching() {
        let live = ids.compactMap { nodes[$0] }
        for i in 0..<live.count {
            for j in (i + 1)..<live.count {
                let a = live[i].raft.log, b = live[j].raft.log
                let lo = max(a.firstIndex, b.firstIndex), hi = min(a.lastIndex, b.lastIndex)
                guard lo <= hi else { continue }
                var k = hi
                while k >= lo, a.term(at: k) != b.term(at: k) { k -= 1 }
                guard k >= lo else { continue }
                var x = lo
                while x <= k {
                    let ea = a.slice(from: x, to: x + 1, maxCount: 1, maxBytes: .max).first!
                    let eb = b.slice(from: x, to: x + 1, maxCount: 1, maxBytes: .max).first!
                    if ea != eb { fail("log matching: nodes \(live[i].raft.id) and \(live[j].raft.id) differ at \(x) below matching \(k)") }
                    x += 1
                }
            }
        }
    }

    /// No acknowledged write lost: after healing, every server applied every acknowledged proposal.
    mutating func checkAcknowledged() {
        for (index, data) in acknowledged {
            for id in ids {
                let m = machines[id]!
                if m.lastIndex < index {
                    fail("node \(id) applied only up to \(m.lastIndex), acknowledged \(index) missing")
                } else if let a = m.applied.first(where: { $0.index == index }), a.data == data {
                    continue
                } else {
                    fail("acknowledged proposal at \(index) lost on node \(id)")
                }
            }
        }
    }
}
