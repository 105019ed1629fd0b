import Foundation
import EtcdAPI
import GRPCServing
import RaftGRPC

extension MetricsRegistry {
    /// The limits of one `DirectHTTP2ServerTransport` as families labelled `server="<name>"`:
    /// what a flood of connections, streams or partial messages ran into.
    static func transportFamilies(_ s: DirectHTTP2ServerTransport.Statistics, server: String) -> [Gauge] {
        let labels = ["server": server]
        return [
            Gauge("orchestrator_grpc_connections", help: "Open connections of a gRPC server.",
                  samples: [(labels, Double(s.openConnections))]),
            Gauge("orchestrator_grpc_connections_refused_total",
                  help: "Connections closed at accept because the server's connection limit was reached.",
                  kind: .counter, samples: [(labels, Double(s.refusedConnections))]),
            Gauge("orchestrator_grpc_streams_refused_total",
                  help: "Streams ended with RESOURCE_EXHAUSTED by a buffer limit or a one-sink-per-connection limit.",
                  kind: .counter, samples: [(labels, Double(s.refusedStreams))]),
            Gauge("orchestrator_grpc_connections_calmed_total",
                  help: "Connections closed with GOAWAY (ENHANCE_YOUR_CALM) for holding too many partial messages.",
                  kind: .counter, samples: [(labels, Double(s.calmedConnections))]),
            Gauge("orchestrator_grpc_streams", help: "Open streams of a gRPC server: calls in flight and open Raft streams.",
                  samples: [(labels, Double(s.openStreams))]),
            Gauge("orchestrator_grpc_buffered_bytes", help: "Bytes of large partial request messages a gRPC server holds.",
                  samples: [(labels, Double(s.bufferedBytes))]),
        ]
    }
}

extension MetricsRegistry {
    /// Raft snapshot transfers between masters (they travel in chunks): a member that caught up
    /// from a snapshot shows it in `orchestrator_raft_snapshots_received_total`.
    static func raftSnapshotFamilies(_ s: GRPCRaftTransport.Statistics) -> [Gauge] {
        [
            Gauge("orchestrator_raft_snapshots_sent_total", help: "Raft snapshots sent to other masters (every chunk written).",
                  kind: .counter, value: Double(s.snapshotsSent)),
            Gauge("orchestrator_raft_snapshots_received_total", help: "Raft snapshots received whole from the leader and handed to Raft.",
                  kind: .counter, value: Double(s.snapshotsReceived)),
            Gauge("orchestrator_raft_snapshot_chunks_rejected_total",
                  help: "Raft snapshot chunks refused: malformed, forged, too large, or of a transfer refused or broken.",
                  kind: .counter, value: Double(s.snapshotChunksRejected)),
            Gauge("orchestrator_raft_snapshot_transfers_discarded_total",
                  help: "Partial Raft snapshot transfers dropped (stream ended, superseded, or a chunk refused).",
                  kind: .counter, value: Double(s.snapshotAssembliesDiscarded)),
            Gauge("orchestrator_raft_snapshot_transfers_refused_total",
                  help: "Raft snapshot transfers refused because too many were being received at once.",
                  kind: .counter, value: Double(s.snapshotAssembliesRefused)),
        ]
    }
}

extension MasterServer {
    /// Puts the counters of the servers `run` starts into `/metrics`: `--rpc-addr` (Raft, write
    /// forwarding, workers), `--etcd-addr` when served, and the assignment streams.
    func collectServerMetrics(raft: RaftParts, etcd: EtcdAPIServer?) {
        let transport = raft.transport
        let workers = raft.rpcServices.lazy.compactMap { $0 as? WorkerService }.first
        metrics.addCollector {
            var families = MetricsRegistry.transportFamilies(transport.serverStatistics, server: "rpc")
            families += MetricsRegistry.raftSnapshotFamilies(transport.statistics)
            if let etcd {
                let stats = etcd.statistics
                families += MetricsRegistry.transportFamilies(stats.transport, server: "etcd")
                families.append(Gauge("orchestrator_etcd_watches", help: "Open etcd API watches.", value: Double(stats.openWatches)))
                families.append(Gauge("orchestrator_etcd_watches_refused_total", help: "etcd API watch creates refused by a watch limit.",
                                      kind: .counter, value: Double(stats.refusedWatches)))
            }
            if let workers {
                families.append(Gauge("orchestrator_assignment_streams", help: "Open worker assignment streams.",
                                      value: Double(workers.assignmentStreams.count)))
                families.append(Gauge("orchestrator_assignment_streams_refused_total",
                                      help: "Worker assignment streams refused at the limit.",
                                      kind: .counter, value: Double(workers.assignmentStreams.refused)))
            }
            return families
        }
    }
}

extension MetricsRegistry {
    /// What the leader loop did while this master led (counters start at zero on every master
    /// and move only on the leader): scheduling rounds, placements and the transactions behind
    /// them, ended tasks deleted past their retention, store compactions.
    static func leaderLoopFamilies(_ loop: LeaderLoop) -> [Gauge] {
        [
            Gauge("orchestrator_scheduler_rounds_total", help: "Scheduling rounds run while leading.",
                  kind: .counter, value: Double(loop.rounds.load(ordering: .relaxed))),
            Gauge("orchestrator_scheduler_placements_total", help: "Tasks placed on nodes while leading.",
                  kind: .counter, value: Double(loop.placements.load(ordering: .relaxed))),
            Gauge("orchestrator_scheduler_commits_total", help: "Store transactions that committed placements.",
                  kind: .counter, value: Double(loop.placementCommits.load(ordering: .relaxed))),
            Gauge("orchestrator_scheduler_conflicts_total",
                  help: "Placement transactions refused because a task or node changed since read; their tasks were decided again.",
                  kind: .counter, value: Double(loop.placementConflicts.load(ordering: .relaxed))),
            Gauge("orchestrator_tasks_deleted_total", help: "Ended tasks deleted past their retention while leading.",
                  kind: .counter, value: Double(loop.deletedTasks.load(ordering: .relaxed))),
            Gauge("orchestrator_store_compactions_total", help: "Store history compactions made while leading.",
                  kind: .counter, value: Double(loop.compactions.load(ordering: .relaxed))),
        ]
    }

    /// The process's resident memory (Prometheus' standard `process_resident_memory_bytes`), from
    /// `/proc/self/statm`; nothing where there is no `/proc`.
    static func processFamilies() -> [Gauge] {
        guard let resident = ProcessMemory.residentBytes() else { return [] }
        return [Gauge("process_resident_memory_bytes", help: "Resident memory size in bytes.", value: Double(resident))]
    }
}

/// The process's own memory, as the kernel counts it.
enum ProcessMemory {
    /// Resident bytes: the second field of `/proc/self/statm` (pages) times the page size.
    static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

private typealias Gauge = MetricsRegistry.Gauge
