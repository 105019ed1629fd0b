import ClusterModel
import Hummingbird
import Store

extension OrchestratorAPI {
    /// `GET /api/v1/cluster`: members, leader, term, commit and applied index, store kind.
    func cluster(_ request: Request) async throws -> Response {
        let status = await self.status.status()
        let revision = try await currentRevision(try request.readConsistency())
        return jsonResponse(ClusterView(status, defaultScheduler: configuration.defaultScheduler, revision: revision),
                            revision: revision)
    }

    /// `GET /readyz`: 200 once a leader is known and this master's store has caught up, else 503
    /// with the reason (so a load balancer sends clients elsewhere meanwhile).
    func readyz() async throws -> Response {
        let (ready, reason) = await self.status.readiness()
        guard ready else {
            return APIError.unavailable("not_ready", reason.isEmpty ? "this master is not ready" : reason).response()
        }
        let alarms = await self.status.storeUsage()?.alarms.map { $0.kind.description } ?? []
        return jsonResponse(HealthView(status: "ready", alarms: alarms.isEmpty ? nil : Array(Set(alarms)).sorted()), revision: nil)
    }

    /// `GET /metrics`: the registry (HTTP and whatever the master records) plus gauges read now:
    /// tasks and nodes by state, the store revision, Raft term, commit and applied index.
    func metricsText() async throws -> Response {
        let counts = try await clusterCounts()
        let status = await self.status.status()
        let ready = await self.status.readiness().ready
        let taskCounts = counts.tasks, nodeCounts = counts.nodes

        typealias Gauge = MetricsRegistry.Gauge
        var snapshot: [Gauge] = [
            Gauge("orchestrator_tasks", help: "Tasks by state.",
                  samples: TaskState.allCases.map { (labels: ["state": $0.rawValue], value: Double(taskCounts[$0]!)) }),
            Gauge("orchestrator_nodes", help: "Nodes by state.",
                  samples: NodeState.allCases.map { (labels: ["state": $0.rawValue], value: Double(nodeCounts[$0]!)) }),
            Gauge("orchestrator_nodes_schedulable", help: "Nodes accepting new tasks (ready and not cordoned).",
                  value: Double(counts.schedulableNodes)),
            Gauge("orchestrator_store_revision", help: "Store revision this master has applied.", value: Double(counts.revision)),
            Gauge("orchestrator_is_leader", help: "1 on the leader, 0 elsewhere.", value: status.leaderID == status.nodeID ? 1 : 0),
            Gauge("orchestrator_ready", help: "1 when /readyz answers 200.", value: ready ? 1 : 0),
            Gauge("orchestrator_event_streams", help: "Open event streams (GET /api/v1/events).", value: Double(streams.count)),
            Gauge("orchestrator_event_streams_refused_total", help: "Event streams refused at maxEventStreams (503).",
                  kind: .counter, value: Double(streams.refusedCount)),
            Gauge("orchestrator_http_connections", help: "Open REST connections; at orchestrator_http_connections_limit new ones wait.",
                  value: Double(connections.openConnections)),
            Gauge("orchestrator_http_connections_limit", help: "The most REST connections served at once.", value: Double(connections.limit)),
        ]
        if let usage = await self.status.storeUsage() {
            snapshot.append(Gauge("orchestrator_store_data_bytes", help: "Bytes the store retains (keys, values, their history), as the quota counts them.",
                                  value: Double(usage.dataBytes)))
            snapshot.append(Gauge("orchestrator_store_quota_bytes", help: "The store's quota (--quota-backend-bytes); 0: none.", value: Double(usage.quotaBytes)))
            snapshot.append(Gauge("orchestrator_store_alarm", help: "1 while the alarm is raised (NOSPACE: writes that grow the store are refused).",
                                  samples: AlarmKind.allCases.map { kind in
                                      (labels: ["alarm": kind.description], value: usage.alarms.contains { $0.kind == kind } ? 1 : 0)
                                  }))
        }
        if let term = status.term { snapshot.append(Gauge("orchestrator_raft_term", help: "Current Raft term.", value: Double(term))) }
        if let commit = status.commitIndex {
            snapshot.append(Gauge("orchestrator_raft_commit_index", help: "Highest Raft log index known committed.", value: Double(commit)))
        }
        if let applied = status.appliedIndex {
            snapshot.append(Gauge("orchestrator_raft_applied_index", help: "Highest Raft log index applied to the store.", value: Double(applied)))
        }
        let text = metrics.render(snapshot: snapshot)
        return Response(status: .ok,
                        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .orchestratorIndex: String(counts.revision)],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// Tasks and nodes by state. From the master's cache, which keeps them counted as changes
    /// apply, so a scrape costs the same at 20,000 tasks as at 20; the revision is the store's
    /// (one key read), as a scan would report it. Until the cache is synced (a master starting,
    /// or relisting after its watch failed), counted from a scan of the store.
    func clusterCounts() async throws -> ClusterCounts {
        if var counts = cache?.counts() {
            counts.revision = try await currentRevision()
            return counts
        }
        let repository = self.repository
        return try await bounded { () async throws -> ClusterCounts in
            let tasks = try await repository.taskPage()
            let nodes = try await repository.readNodes(consistency: .serializable).nodes
            return ClusterCounts.scan(tasks: tasks.tasks, nodes: nodes, revision: tasks.revision)
        }
    }

    /// The store revision now (for routes that read no record), bounded like any store call.
    func currentRevision(_ consistency: ReadConsistency = .serializable) async throws -> Int64 {
        let store = repository.store
        return try await bounded {
            try await store.range(RangeRequest(key: ClusterRepository.leaderKey, countOnly: true), consistency: consistency).revision
        }
    }
}
