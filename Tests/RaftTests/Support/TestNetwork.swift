@testable import Raft

/// A synchronous network of `RawNode`s for rule-by-rule tests (like etcd-raft's `network`):
/// `stabilize()` carries out Readies and delivers messages, first in first out, until quiet.
struct TestNetwork {
    var nodes: [NodeID: RawNode] = [:]
    var storages: [NodeID: MemoryLogStorage] = [:]
    /// Applied normal commands per node.
    var applied: [NodeID: [[UInt8]]] = [:]
    /// Links that drop everything, as (from, to).
    var cut: Set<[NodeID]> = []
    /// Message kinds that are dropped everywhere.
    var dropKinds: Set<MessageKind> = []
    /// Every message delivered, for assertions about traffic.
    var delivered: [Message] = []
    var readStates: [NodeID: [ReadState]] = [:]
    var syncs: [NodeID: Int] = [:]

    init(_ ids: [NodeID], configure: (inout RaftConfig) -> Void = { _ in }) {
        for id in ids {
            var config = RaftConfig(id: id, seed: id)
            configure(&config)
            storages[id] = MemoryLogStorage()
            nodes[id] = RawNode(config: config, persisted: PersistedState(), bootstrap: ids)
        }
        stabilize()
    }

    /// Adds a server with no state (a new member that must learn everything from the leader).
    mutating func addEmpty(_ id: NodeID, configure: (inout RaftConfig) -> Void = { _ in }) {
        var config = RaftConfig(id: id, seed: id)
        configure(&config)
        storages[id] = MemoryLogStorage()
        nodes[id] = RawNode(config: config, persisted: PersistedState())
    }

    subscript(id: NodeID) -> Raft { nodes[id]!.raft }

    func isCut(_ from: NodeID, _ to: NodeID) -> Bool {
        cut.contains([from, to])
    }

    mutating func isolate(_ id: NodeID) {
        for other in nodes.keys where other != id {
            cut.insert([id, other])
            cut.insert([other, id])
        }
    }

    mutating func heal() { cut = [] }

    /// Carries out one node's Readies; returns the messages it sends.
    mutating func process(_ id: NodeID) -> [Message] {
        var out: [Message] = []
        guard var node = nodes[id] else { return out }
        while node.hasReady {
            let ready = node.ready()
            out += ready.messagesBeforePersist
            if ready.mustSync {
                try! storages[id]!.save(ready.persistBatch)
                syncs[id, default: 0] += 1
            }
            out += ready.messages
            for e in ready.committedEntries {
                if e.kind == .confChange, let cc = ConfChange(decoding: e.data) { node.applyConfChange(cc) }
                if e.kind == .normal && !e.data.isEmpty { applied[id, default: []].append(e.data) }
            }
            readStates[id, default: []] += ready.readStates
            node.advance(ready)
        }
        nodes[id] = node
        return out
    }

    /// Delivers messages until no node has anything more to say.
    mutating func stabilize(limit: Int = 10_000) {
        var queue: [Message] = []
        for id in nodes.keys.sorted() { queue += process(id) }
        var steps = 0
        while !queue.isEmpty && steps < limit {
            steps += 1
            let m = queue.removeFirst()
            guard nodes[m.to] != nil, !isCut(m.from, m.to), !dropKinds.contains(m.kind) else { continue }
            delivered.append(m)
            try? nodes[m.to]!.step(m)
            queue += process(m.to)
        }
    }

    /// Ticks `id` until its election timeout fires, then delivers everything.
    mutating func electionTimeout(_ id: NodeID) {
        let ticks = 2 * nodes[id]!.raft.config.electionTick
        for _ in 0..<ticks {
            nodes[id]!.tick()
            if nodes[id]!.raft.role != .follower || nodes[id]!.hasReady { break }
        }
        stabilize()
    }

    /// Makes `id` leader by letting its election timeout fire, after the others' leases ran out
    /// (as they do when the old leader is gone: they have not heard from it for a timeout).
    mutating func elect(_ id: NodeID) {
        for other in nodes.keys where other != id && !isCut(id, other) {
            nodes[other]!.raft.electionElapsed = nodes[other]!.raft.config.electionTick
        }
        electionTimeout(id)
    }

    mutating func tick(_ id: NodeID, times: Int) {
        for _ in 0..<times { nodes[id]!.tick() }
        stabilize()
    }

    mutating func propose(_ id: NodeID, _ text: String) throws(RaftError) {
        _ = try nodes[id]!.propose([Array(text.utf8)])
        stabilize()
    }
}
