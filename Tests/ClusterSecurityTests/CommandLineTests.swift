import ArgumentParser
import ClusterSecurity
import Orchestrator
import Testing
@testable import master

@Suite struct CommandLineTests {
    @Test("master tls init parses its flags into a TLSInit plan")
    func tlsInit() throws {
        let command = try MasterCommand.parseCommand(
            ["tls", "init", "/tmp/x", "--master", "m1=10.0.0.1,m1.example", "--master", "m2=10.0.0.2", "--worker", "w1", "--client", "ops",
             "--etcd", "etcd1=etcd1", "--days", "30", "--no-loopback"],
            environment: ["ORCH_PEERS": "m1=a:1"])
        let parsed = try #require(command as? TLSInitCommand)
        let plan = try parsed.makePlan()
        #expect(plan.directory.path == "/tmp/x")
        #expect(plan.requests == [
            CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m1"), hosts: ["10.0.0.1", "m1.example"]),
            CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m2"), hosts: ["10.0.0.2"]),
            CertificateRequest(identity: try ClusterIdentity(role: .worker, name: "w1")),
            CertificateRequest(identity: try ClusterIdentity(role: .client, name: "ops")),
            CertificateRequest(identity: try ClusterIdentity(role: .etcd, name: "etcd1"), hosts: ["etcd1"]),
        ])
        #expect(plan.days == 30)
        #expect(!plan.loopback)
        #expect(!plan.force)
    }

    @Test("master tls init refuses bad values", arguments: [
        ["tls", "init", "/tmp/x", "--master", "m1"],
        ["tls", "init", "/tmp/x", "--etcd", "etcd1"],
        ["tls", "issue", "/tmp/x", "--etcd", "etcd1"],
        ["tls", "init", "/tmp/x", "--master", "m1=not a host"],
        ["tls", "init", "/tmp/x", "--worker", "W1"],
        ["tls", "init", "/tmp/x", "--days", "0"],
        ["tls", "init"],
        ["tls", "issue", "/tmp/x"],
        ["tls", "issue", "/tmp/x", "--worker", "w1", "--client", "ops"],
    ])
    func tlsInitRefuses(arguments: [String]) {
        #expect(throws: (any Error).self) { try MasterCommand.parseCommand(arguments, environment: [:]) }
    }

    @Test func tlsIssue() throws {
        let command = try MasterCommand.parseCommand(["tls", "issue", "/tmp/x", "--master", "m3=10.0.0.3", "--force"], environment: [:])
        let plan = try #require(command as? TLSIssueCommand).makePlan()
        #expect(plan.request == CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m3"), hosts: ["10.0.0.3"]))
        #expect(plan.force)
        #expect(plan.loopback)
    }

    @Test("master --dev and master --id ... still parse as the server command, with ORCH_ variables")
    func serverCommand() throws {
        let dev = try #require(try MasterCommand.parseCommand(["--dev"], environment: [:]) as? ServeCommand)
        #expect(dev.dev)
        let m2 = try #require(try MasterCommand.parseCommand(["--id", "m2", "--peers", "m1=127.0.0.1:9090,m2=127.0.0.1:9091"], environment: [:]) as? ServeCommand)
        #expect(m2.id == "m2")
        #expect(!m2.dev)
        #expect(m2.peers == "m1=127.0.0.1:9090,m2=127.0.0.1:9091")
        let fromEnvironment = try #require(try MasterCommand.parseCommand([], environment: ["ORCH_ID": "m3", "ORCH_DEV": "true"]) as? ServeCommand)
        #expect(fromEnvironment.id == "m3")
        #expect(fromEnvironment.dev)
        let named = try #require(try MasterCommand.parseCommand(["serve", "--dev"], environment: [:]) as? ServeCommand)
        #expect(named.dev)
        #expect(throws: (any Error).self) { try MasterCommand.parseCommand(["--no-such-flag"], environment: [:]) }
    }

    @Test("--snapshot-threshold (or ORCH_SNAPSHOT_THRESHOLD) reaches the master's config; Raft's default without it; 0 is refused")
    func snapshotThreshold() throws {
        func config(_ arguments: [String], _ environment: [String: String] = [:]) throws -> MasterConfig {
            try #require(try MasterCommand.parseCommand(arguments, environment: environment) as? ServeCommand).makeConfig()
        }
        #expect(try config(["--snapshot-threshold", "20"]).snapshotThreshold == 20)
        #expect(try config([], ["ORCH_SNAPSHOT_THRESHOLD": "300"]).snapshotThreshold == 300)
        #expect(try config([]).snapshotThreshold == 50_000)
        #expect(throws: MasterConfigError.self) { try config(["--snapshot-threshold", "0"]) }
    }

    @Test("--etcd-prefix and --etcd-compaction-retention, from flags or ORCH_ variables, reach the config; bad values are refused by name")
    func etcdFlags() throws {
        let etcd = ["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"]
        let defaults = try #require(try MasterCommand.parseCommand(etcd, environment: [:]) as? ServeCommand).makeConfig()
        #expect(defaults.etcdPrefix == "" && defaults.etcdCompactionRetention == 0 && defaults.leaderCompactionRetention == nil)
        let flags = try #require(try MasterCommand.parseCommand(etcd + ["--etcd-prefix", "/team-a", "--etcd-compaction-retention", "5000"],
                                                               environment: [:]) as? ServeCommand).makeConfig()
        #expect(flags.etcdPrefix == "/team-a" && flags.leaderCompactionRetention == 5000)
        let environment = ["ORCH_ETCD_PREFIX": "/team-b", "ORCH_ETCD_COMPACTION_RETENTION": "100"]
        let fromEnvironment = try #require(try MasterCommand.parseCommand(etcd, environment: environment) as? ServeCommand).makeConfig()
        #expect(fromEnvironment.etcdPrefix == "/team-b" && fromEnvironment.etcdCompactionRetention == 100)
        let bad = try #require(try MasterCommand.parseCommand(etcd + ["--etcd-prefix", "team-a/"], environment: [:]) as? ServeCommand)
        do {
            _ = try bad.makeConfig()
            Issue.record("a prefix without a leading '/' was accepted")
        } catch {
            #expect("\(error)".contains("--etcd-prefix"), "\(error)")
        }
    }
}
