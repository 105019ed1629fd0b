import EtcdAPI
import EtcdProto
import EtcdAPITestSupport
import Testing

extension EtcdAPITestSuites {
    /// Watch limits: each watch holds a store watch and up to a backlog of events, so a stream and
    /// a member serve a bounded number; a create past either is refused the way etcd refuses one
    /// (created and canceled at once, with the reason), and the stream carries on.
    @Suite(.serialized)
    struct WatchLimitTests {
        @Test("a create past maxWatchesPerStream is refused with the reason; after a cancel there is room again")
        func perStream() async throws {
            var configuration = TestCluster.configuration()
            configuration.maxWatchesPerStream = 2
            try await TestCluster.with(configuration: configuration) { cluster in
                let (leader, _, _) = try await cluster.leaderAndFollower()
                let server = cluster.members.first { $0.endpoint == leader }!.server
                try await withConnection(leader) { connection in
                    let watch = WatchDriver(connection)
                    watch.create("a")
                    watch.create("b")
                    watch.create("c")
                    try await watch.wait("three answers") { $0.filter(\.created).count == 3 }
                    let refused = watch.responses.filter(\.canceled)
                    #expect(refused.count == 1 && refused[0].watchID == -1, "\(watch.responses)")
                    #expect(refused.first?.cancelReason.contains("too many watches") == true)
                    #expect(server.statistics.openWatches == 2 && server.statistics.refusedWatches == 1)
                    watch.cancel(0)
                    try await watch.wait("the cancel") { $0.contains { $0.watchID == 0 && $0.canceled } }
                    watch.create("d")
                    try await watch.wait("a fourth created answer") { $0.filter(\.created).count == 4 }
                    #expect(watch.responses.filter(\.canceled).count == 2, "only the cancel and the refusal")
                    await watch.close()
                }
                try await eventually("the watches to be released") { server.statistics.openWatches == 0 }
            }
        }
    }
}

/// Polls `condition` until it holds; fails after `timeout`.
private func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw LocalClusterError("\(what) did not happen within \(timeout)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}
