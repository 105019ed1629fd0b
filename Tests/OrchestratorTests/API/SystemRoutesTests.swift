import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import Store
@testable import Orchestrator

@Suite struct SystemRoutesTests {
    @Test("cluster: members, leader, term, indexes, store kind; explicit nulls when unknown")
    func cluster() async throws {
        let f = APIFixture { $0.defaultScheduler = .spread }
        try await f.test { client in
            let r = try await client.send(.get, "/api/v1/cluster")
            #expect(r.status == .ok)
            let c = r.json
            #expect(c["node_id"] as? String == "m1")
            #expect(c["leader_id"] as? String == "m1")
            #expect(c["term"] as? Int == 3)
            #expect(c["commit_index"] as? Int == 40)
            #expect(c["applied_index"] as? Int == 39)
            #expect(c["store"] as? String == "memory")
            #expect(c["ready"] as? Bool == true)
            #expect(c["default_scheduler"] as? String == "spread")
            let members = try #require(c["members"] as? [[String: Any]])
            #expect(members.map { $0["id"] as? String } == ["m1", "m2"])
            #expect(members.map { $0["role"] as? String } == ["leader", "follower"])
            #expect(members.first?["api_address"] as? String == "127.0.0.1:8080")

            f.status.set { $0.leaderID = nil; $0.term = nil }
            let none = try await client.send(.get, "/api/v1/cluster")
            #expect(none.json["leader_id"] is NSNull)
            #expect(none.json["term"] is NSNull)
            #expect(none.header("X-Orchestrator-Leader") == nil)
            #expect(none.header("X-Orchestrator-Index") != nil)
        }
    }

    @Test("health and healthz are always 200; readyz follows readiness with a reason")
    func probes() async throws {
        let f = APIFixture()
        try await f.test { client in
            for path in ["/health", "/healthz", "/readyz"] {
                let r = try await client.send(.get, path)
                #expect(r.status == .ok, "\(path)")
                #expect(r.json["status"] != nil)
            }
            f.status.set { $0.isReady = false; $0.leaderID = nil }
            let r = try await client.send(.get, "/readyz")
            #expect(r.status == .serviceUnavailable)
            #expect(r.errorCode == "not_ready")
            #expect(r.errorMessage == "no leader is known")
            f.status.set { $0.notReadyReason = "applied 10 of 40" }
            #expect(try await client.send(.get, "/readyz").errorMessage == "applied 10 of 40")
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }
    }

    @Test("the store's quota: readyz stays 200 and lists a raised alarm, metrics give bytes, quota and alarm, a write refused for space is 507 store_full")
    func quota() async throws {
        let f = APIFixture()
        try await f.test { client in
            #expect(try await client.send(.get, "/readyz").json["alarms"] == nil)
            #expect(!(try await client.send(.get, "/metrics").text.contains("orchestrator_store_quota_bytes")))
            f.status.usage.withLock { $0 = StoreUsage(dataBytes: 5000, quotaBytes: 4096, alarms: [StoreAlarm(memberID: 2, kind: .noSpace)]) }
            let ready = try await client.send(.get, "/readyz")
            #expect(ready.status == .ok && ready.json["alarms"] as? [String] == ["NOSPACE"])
            let metrics = try await client.send(.get, "/metrics").text
            for line in ["orchestrator_store_data_bytes 5000", "orchestrator_store_quota_bytes 4096",
                         "orchestrator_store_alarm{alarm=\"NOSPACE\"} 1", "orchestrator_store_alarm{alarm=\"CORRUPT\"} 0"] {
                #expect(metrics.contains(line), "\(line)")
            }
        }
        let refusal = APIError.from(StoreError.noSpace)
        #expect(refusal.status == 507 && refusal.code == "store_full" && refusal.message.contains("etcdctl alarm disarm"))
    }

    @Test("metrics: Prometheus text with HTTP counters, a duration histogram, tasks and nodes by state, raft gauges, fed counters")
    func metrics() async throws {
        let f = APIFixture()
        try await f.addNode("n1")
        f.api.metrics.increment("orchestrator_scheduler_placements_total", labels: ["algorithm": "binpacking"], help: "Placements committed.")
        try await f.test { client in
            try await client.createTask()
            try await client.createTask()
            _ = try await client.send(.get, "/api/v1/tasks/t001")
            _ = try await client.send(.get, "/api/v1/tasks/zzz")
            _ = try await client.send(.get, "/no/such/route")
            let r = try await client.send(.get, "/metrics")
            #expect(r.status == .ok)
            #expect(r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            let lines = Set(r.text.split(separator: "\n").map(String.init))
            for expected in [
                #"orchestrator_http_requests_total{method="POST",route="/api/v1/tasks",status="201"} 2"#,
                #"orchestrator_http_requests_total{method="GET",route="/api/v1/tasks/{id}",status="200"} 1"#,
                #"orchestrator_http_requests_total{method="GET",route="/api/v1/tasks/{id}",status="404"} 1"#,
                #"orchestrator_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
                #"orchestrator_http_request_duration_seconds_count{method="POST",route="/api/v1/tasks"} 2"#,
                #"orchestrator_http_request_duration_seconds_bucket{method="POST",route="/api/v1/tasks",le="+Inf"} 2"#,
                "# TYPE orchestrator_http_request_duration_seconds histogram",
                "# TYPE orchestrator_http_requests_total counter",
                #"orchestrator_tasks{state="pending"} 2"#,
                #"orchestrator_tasks{state="running"} 0"#,
                #"orchestrator_nodes{state="ready"} 1"#,
                #"orchestrator_nodes{state="down"} 0"#,
                "orchestrator_raft_term 3",
                "orchestrator_raft_commit_index 40",
                "orchestrator_raft_applied_index 39",
                "orchestrator_is_leader 1",
                #"orchestrator_scheduler_placements_total{algorithm="binpacking"} 1"#,
            ] {
                #expect(lines.contains(expected), "missing: \(expected)")
            }
            let revision = try await f.snapshot().revision
            #expect(lines.contains("orchestrator_store_revision \(revision)"))
        }
    }

    @Test("the registry's text format: help and type once per family, escaped labels, cumulative buckets")
    func registryFormat() {
        let m = MetricsRegistry()
        m.increment("c_total", labels: ["a": "x\"y\\z\nw"], help: "A counter.")
        m.increment("c_total", by: 2, labels: ["a": "x\"y\\z\nw"], help: "ignored")
        m.set("g", 1.5, help: "A gauge.")
        m.observe("h_seconds", 0.25, buckets: [0.1, 0.5, 1], help: "A histogram.")
        m.observe("h_seconds", 0.5, buckets: [0.1, 0.5, 1], help: "A histogram.")
        #expect(m.render() == """
            # HELP c_total A counter.
            # TYPE c_total counter
            c_total{a="x\\"y\\\\z\\nw"} 3
            # HELP g A gauge.
            # TYPE g gauge
            g 1.5
            # HELP h_seconds A histogram.
            # TYPE h_seconds histogram
            h_seconds_bucket{le="0.1"} 0
            h_seconds_bucket{le="0.5"} 2
            h_seconds_bucket{le="1"} 2
            h_seconds_bucket{le="+Inf"} 2
            h_seconds_sum 0.75
            h_seconds_count 2

            """)
        #expect(m.value("g") == 1.5)
    }

    @Test("ids are time-sortable, URL-safe, and strictly increasing within a millisecond")
    func ids() {
        let clock = Counter()
        let fixed = TaskIDGenerator(clock: { 1_700_000_000_000 })
        let a = fixed.next(), b = fixed.next(), c = fixed.next()
        #expect(a < b && b < c)
        #expect(a.count == 26)
        #expect(a.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) })
        #expect(a.prefix(10) == b.prefix(10))
        let ticking = TaskIDGenerator(clock: { Int64(clock.next()) * 1000 })
        var previous = ""
        for _ in 0..<100 {
            let id = ticking.next()
            #expect(id > previous)
            previous = id
        }
    }
}
