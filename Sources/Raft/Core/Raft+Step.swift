extension Raft {
    /// Processes one message from a peer. Throws, changing nothing, when the message is malformed
    /// or impossible (it then comes from a faulty peer and must not corrupt this server).
    public mutating func step(_ m: Message) throws(StepRejection) {
        try validate(m)

        // Raft §5.1: terms order everything. Forwarded requests (term 0) are exempt.
        if m.term > term && m.term != 0 {
            if m.kind == .vote || m.kind == .preVote {
                let force = m.context == transferContext
                let inLease = config.checkQuorum && leader != noNode && electionElapsed < config.electionTick
                if !force && inLease {
                    // Thesis §4.2.3 and §9.6: while we hear from a leader, a disruptive candidate
                    // (e.g. one rejoining after a partition) is ignored, term and all.
                    return
                }
            }
            switch m.kind {
            case .preVote:
                break // never changes our term
            case .preVoteResponse where !m.reject:
                break // a granted pre-vote is for a future term we have not started
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: noNode)
            }
        } else if m.term < term && m.term != 0 {
            if (config.checkQuorum || config.preVote) && (m.kind == .heartbeat || m.kind == .append) {
                // A stale leader (e.g. from the other side of a healed partition) learns our term
                // and steps down; without this, with pre-vote on, it could block us forever.
                send(Message(kind: .appendResponse, to: m.from))
            } else if m.kind == .preVote {
                send(Message(kind: .preVoteResponse, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.kind {
        case .vote, .preVote:
            handleVoteRequest(m)
        default:
            switch role {
            case .leader: try stepLeader(m)
            case .candidate, .preCandidate: try stepCandidate(m)
            case .follower: try stepFollower(m)
            }
        }
    }

    /// Rejects messages no correct peer sends.
    func validate(_ m: Message) throws(StepRejection) {
        guard m.to == id else { throw StepRejection("message for \(m.to) delivered to \(id)") }
        guard m.from != noNode, m.from != id else { throw StepRejection("message from invalid sender \(m.from)") }
        if m.kind == .append {
            for (offset, entry) in m.entries.enumerated() {
                guard entry.index == m.index + 1 + UInt64(offset) else {
                    throw StepRejection("append from \(m.from) has entry \(entry.index) at position \(offset) after index \(m.index)")
                }
                guard entry.term <= m.term, entry.term >= m.logTerm else {
                    throw StepRejection("append from \(m.from) has entry term \(entry.term) outside [\(m.logTerm), \(m.term)]")
                }
                // Committed entries are final (Leader Completeness): a peer asking to overwrite
                // one is faulty, and must change nothing here, not even our term.
                if entry.index <= log.committed, let ours = log.term(at: entry.index), ours != entry.term {
                    throw StepRejection("append from \(m.from) would overwrite committed entry \(entry.index)")
                }
            }
        }
        if m.kind == .snapshot {
            guard let snap = m.snapshot, !snap.isEmpty else { throw StepRejection("snapshot message from \(m.from) without snapshot") }
            guard snap.metadata.term <= m.term else { throw StepRejection("snapshot from \(m.from) of a future term") }
        }
    }

    mutating func handleVoteRequest(_ m: Message) {
        let isPre = m.kind == .preVote
        // We can vote for a candidate we already voted for, or for anyone if we have no vote and
        // no leader in this term; a pre-vote for a later term never binds us (thesis §9.6).
        let canVote = vote == m.from || (vote == noNode && leader == noNode) || (isPre && m.term > term)
        let responseKind: MessageKind = isPre ? .preVoteResponse : .voteResponse
        if canVote && log.isUpToDate(lastIndex: m.index, lastTerm: m.logTerm) {
            send(Message(kind: responseKind, to: m.from, term: m.term))
            if !isPre {
                electionElapsed = 0
                vote = m.from
            }
        } else {
            send(Message(kind: responseKind, to: m.from, term: term, reject: true))
        }
    }

    mutating func stepCandidate(_ m: Message) throws(StepRejection) {
        switch m.kind {
        case .append, .heartbeat, .snapshot:
            // A leader of our term exists (§5.2): follow it.
            becomeFollower(term: m.term, leader: m.from)
            try stepFollower(m)
        case .voteResponse where role == .candidate, .preVoteResponse where role == .preCandidate:
            guard confState.voters.contains(m.from) else { return }
            if votes[m.from] == nil { votes[m.from] = !m.reject }
            _ = checkElection()
        default:
            break
        }
    }

    mutating func stepFollower(_ m: Message) throws(StepRejection) {
        switch m.kind {
        case .append:
            electionElapsed = 0
            leader = m.from
            try handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            leader = m.from
            log.commit(to: min(m.commit, log.lastIndex))
            send(Message(kind: .heartbeatResponse, to: m.from, context: m.context))
        case .snapshot:
            electionElapsed = 0
            leader = m.from
            handleSnapshot(m)
        case .timeoutNow:
            // Leadership transfer: campaign at once, skipping pre-vote (thesis §3.10).
            campaign(transfer: true)
        case .readIndexResponse:
            readStates.append(ReadState(index: m.index, context: m.context))
        default:
            break
        }
    }

    mutating func handleAppend(_ m: Message) throws(StepRejection) {
        if m.index < log.committed {
            // Everything up to our commit index already matches the leader's log (Log Matching).
            send(Message(kind: .appendResponse, to: m.from, index: log.committed))
            return
        }
        if let lastNew = try log.maybeAppend(index: m.index, logTerm: m.logTerm, commit: m.commit, new: m.entries) {
            send(Message(kind: .appendResponse, to: m.from, index: lastNew))
        } else {
            // Fast backtracking: tell the leader the last index whose term is at most the term it
            // probed with, so it can skip a whole term of conflicting entries per round trip.
            let hint = log.findConflictByTerm(index: min(m.index, log.lastIndex), term: m.logTerm)
            send(Message(kind: .appendResponse, to: m.from, logTerm: hint.term, index: m.index,
                         reject: true, rejectHint: hint.index))
        }
    }

    mutating func handleSnapshot(_ m: Message) {
        guard let snap = m.snapshot else { return }
        if log.restore(snap) {
            confState = snap.metadata.confState
            rebuildProgress()
            send(Message(kind: .appendResponse, to: m.from, index: log.lastIndex))
        } else {
            send(Message(kind: .appendResponse, to: m.from, index: log.committed))
        }
    }
}
