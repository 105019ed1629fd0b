extension Raft {
    mutating func stepLeader(_ m: Message) throws(StepRejection) {
        switch m.kind {
        case .appendResponse:
            try handleAppendResponse(m)
        case .heartbeatResponse:
            guard progress[m.from] != nil else { return }
            progress[m.from]!.recentActive = true
            progress[m.from]!.probeSent = false
            if progress[m.from]!.state == .replicate && progress[m.from]!.inflights.isFull {
                // Appends of a full window may all be lost; free one so that the next append goes
                // out, and a gap in the follower's log turns into a rejection and a probe.
                progress[m.from]!.inflights.freeFirst()
            }
            if progress[m.from]!.match < log.lastIndex { _ = sendAppend(to: m.from) }
            if !m.context.isEmpty, confState.voters.contains(m.from) {
                for request in readOnly.acknowledge(context: m.context, from: m.from, quorum: quorum) {
                    answerRead(request)
                }
            }
        case .readIndex:
            handleReadIndex(m)
        case .transferLeader:
            transferLeadership(to: m.from)
        default:
            break
        }
    }

    mutating func handleAppendResponse(_ m: Message) throws(StepRejection) {
        guard var pr = progress[m.from] else { return }
        if !m.reject && m.index > log.lastIndex {
            throw StepRejection("\(m.from) acknowledged index \(m.index) beyond the leader's last index \(log.lastIndex)")
        }
        pr.recentActive = true
        if m.reject {
            var hint = m.rejectHint
            if m.logTerm > 0 {
                // Skip all of our entries whose term is above the follower's term at `hint`.
                hint = log.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index
            }
            if pr.maybeDecrTo(rejected: m.index, matchHint: hint) {
                if pr.state == .replicate { pr.becomeProbe() }
                progress[m.from] = pr
                _ = sendAppend(to: m.from)
            } else {
                progress[m.from] = pr
            }
            return
        }
        let wasPaused = pr.isPaused
        if pr.maybeUpdate(m.index) {
            switch pr.state {
            case .probe:
                pr.becomeReplicate()
            case .snapshot where pr.match + 1 >= log.firstIndex:
                // The follower's log now joins ours: resume normal replication.
                pr.becomeProbe()
                pr.becomeReplicate()
            case .replicate:
                pr.inflights.free(upTo: m.index)
            default:
                break
            }
            progress[m.from] = pr
            if maybeCommit() {
                // The new commit index travels with the next appends.
                broadcastAppend()
            } else if wasPaused {
                _ = sendAppend(to: m.from)
            }
            // Fill the pipeline: keep sending while the window has room and entries remain.
            while sendAppend(to: m.from, sendIfEmpty: false) {}
            if m.from == leadTransferee && progress[m.from]!.match == log.lastIndex {
                send(Message(kind: .timeoutNow, to: m.from))
            }
        } else {
            progress[m.from] = pr
        }
    }

    /// Raft §5.4.2: the commit index moves to the highest index stored by a quorum of voters, but
    /// only if that entry is of the current term (older entries commit indirectly with it).
    mutating func maybeCommit() -> Bool {
        var matches = confState.voters.map { progress[$0]?.match ?? 0 }
        guard !matches.isEmpty else { return false }
        matches.sort(by: >)
        let quorumIndex = matches[quorum - 1]
        guard quorumIndex > log.committed, log.term(at: quorumIndex) == term else { return false }
        log.commit(to: quorumIndex)
        releasePendingReads()
        return true
    }

    /// Sends entries from `next` to `to`, or a snapshot when they were compacted.
    /// Returns whether a message was sent.
    @discardableResult
    mutating func sendAppend(to node: NodeID, sendIfEmpty: Bool = true) -> Bool {
        guard node != id, var pr = progress[node], !pr.isPaused else { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex) else {
            return sendSnapshot(to: node)
        }
        let entries = log.slice(from: pr.next, to: log.lastIndex + 1,
                                maxCount: config.maxEntriesPerMessage, maxBytes: config.maxBytesPerMessage)
        if entries.isEmpty && !sendIfEmpty { return false }
        if let last = entries.last {
            switch pr.state {
            case .replicate:
                // Optimistic: assume it will be accepted and send the next batch right behind it.
                pr.next = last.index + 1
                pr.inflights.add(last.index)
            case .probe:
                pr.probeSent = true
            case .snapshot:
                return false
            }
        } else if pr.state == .probe {
            pr.probeSent = true
        }
        progress[node] = pr
        send(Message(kind: .append, to: node, logTerm: prevTerm, index: prevIndex,
                     entries: Array(entries), commit: log.committed))
        return true
    }

    mutating func sendSnapshot(to node: NodeID) -> Bool {
        guard var pr = progress[node], pr.recentActive || pr.state == .probe else { return false }
        let snap = log.snapshot
        guard !snap.isEmpty else { return false }
        pr.becomeSnapshot(snap.metadata.index)
        progress[node] = pr
        send(Message(kind: .snapshot, to: node, snapshot: snap))
        return true
    }

    mutating func broadcastAppend() {
        for node in progress.keys.sorted() where node != id { sendAppend(to: node) }
    }

    mutating func broadcastHeartbeat(context: [UInt8]) {
        for node in progress.keys.sorted() where node != id {
            // Never tell a follower to commit beyond what it is known to hold.
            let commit = min(progress[node]!.match, log.committed)
            send(Message(kind: .heartbeat, to: node, commit: commit, context: context))
        }
    }

    /// Appends entries of the current term at the end of the leader's log; they count toward the
    /// leader's own match only once persisted (see `RawNode.advance`).
    mutating func appendEntries(_ new: [Entry]) {
        var index = log.lastIndex
        let stamped = new.map { entry -> Entry in
            index += 1
            return Entry(term: term, index: index, kind: entry.kind, data: entry.data)
        }
        log.append(stamped)
    }

    /// Records that this server's log is durable up to `index`; on the leader it may commit.
    mutating func persisted(upTo index: UInt64, term entryTerm: UInt64) {
        log.stableTo(index: index, term: entryTerm)
        guard role == .leader, progress[id] != nil else { return }
        if progress[id]!.maybeUpdate(log.stableIndex), maybeCommit() {
            broadcastAppend()
        }
    }

    // MARK: - Leadership transfer (thesis §3.10)

    mutating func transferLeadership(to target: NodeID) {
        guard role == .leader, target != id, confState.voters.contains(target) else { return }
        if leadTransferee == target { return }
        leadTransferee = target
        // The transfer must finish within an election timeout, else it is abandoned.
        electionElapsed = 0
        if progress[target]!.match == log.lastIndex {
            send(Message(kind: .timeoutNow, to: target))
        } else {
            sendAppend(to: target)
        }
    }
}
