import ArgumentParser

/// The benchmarks of BENCHMARKS.md, one subcommand each. Run them from a release build; the
/// process benchmarks look for `raft-node`, `master` and `worker` next to this binary.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "The benchmarks of BENCHMARKS.md.",
        discussion: """
            Build in release mode, with the executables a benchmark drives next to it:
              for p in bench raft-node master worker; do swift build -c release --product $p; done
            """,
        subcommands: [RaftBench.self, StorageBench.self, SchedulerBench.self, PlacementBench.self, ChurnBench.self, EtcdBench.self]
    )
}
