import ClusterModel
import Testing
@testable import Orchestrator

/// The pure parts of a master's graceful stop.
@Suite struct MasterLifecycleTests {
    @Test("a stopping leader hands over to the voter whose log matches the most; ties to the lowest id; alone, to nobody",
          arguments: [
              // (voters, match, expected): the leader is always 1.
              ([1, 2, 3], [2: 10, 3: 12], 3 as UInt64?),
              ([1, 2, 3], [2: 12, 3: 10], 2),
              ([1, 2, 3], [2: 7, 3: 7], 2),        // a tie: the lowest id
              ([3, 1, 2], [3: 7, 2: 7], 2),        // the order of the voters does not matter
              ([1, 2, 3], [3: 5], 3),              // a voter never heard from counts as 0
              ([1], [:], nil),                      // a single master has nobody to hand over to
          ] as [([UInt64], [UInt64: UInt64], UInt64?)])
    func transferTarget(voters: [UInt64], match: [UInt64: UInt64], expected: UInt64?) {
        #expect(MasterServer.transferTarget(leader: 1, voters: voters, match: match) == expected)
    }

    @Test("a port in use is recognised however it is wrapped, and the error names the flag")
    func addressInUse() async throws {
        struct Wrapped: Error, CustomStringConvertible { var description: String }
        #expect(MasterServer.isAddressInUse(Wrapped(description: "bind(descriptor:ptr:bytes:): Address already in use (errno: 98)")))
        #expect(!MasterServer.isAddressInUse(Wrapped(description: "connection refused")))
        await #expect(throws: MasterConfigError.self) {
            try await MasterServer.naming("--etcd-addr", HostPort(host: "0.0.0.0", port: 2379)) {
                throw Wrapped(description: "Address already in use")
            }
        }
        do {
            try await MasterServer.naming("--etcd-addr", HostPort(host: "0.0.0.0", port: 2379)) { throw Wrapped(description: "Address already in use") }
        } catch {
            #expect("\(error)".contains("--etcd-addr 0.0.0.0:2379") && "\(error)".contains("--etcd-addr off"))
        }
    }
}
