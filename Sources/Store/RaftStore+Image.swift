extension RaftStore {
    /// A copy of the whole store that reflects every write committed before the call (a ReadIndex
    /// first, as a linearizable read), with the Raft index it was applied up to: what a backup
    /// saves. The copy is copy-on-write, so taking it costs O(1) under the machine's lock; encode
    /// it (`snapshotBytes()`) off any hot path.
    public func consistentImage() async throws -> (store: KeyValueStore, appliedIndex: UInt64) {
        try await waitLinearizable()
        return machine.current
    }
}
