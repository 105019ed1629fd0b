// swift-tools-version:6.1
import PackageDescription

// The products of our dependencies, each named once.
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let grpcHTTP2 = Target.Dependency.product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let asyncHTTPClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let nioFoundationCompat = Target.Dependency.product(name: "NIOFoundationCompat", package: "swift-nio")
let nioTLS = Target.Dependency.product(name: "NIOTLS", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioHTTP2 = Target.Dependency.product(name: "NIOHTTP2", package: "swift-nio-http2")
let nioHPACK = Target.Dependency.product(name: "NIOHPACK", package: "swift-nio-http2")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let hummingbirdTLS = Target.Dependency.product(name: "HummingbirdTLS", package: "hummingbird")
let hummingbirdCore = Target.Dependency.product(name: "HummingbirdCore", package: "hummingbird")
let hummingbirdTesting = Target.Dependency.product(name: "HummingbirdTesting", package: "hummingbird")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let swiftASN1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")

let package = Package(
    name: "Orchestrator",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Raft", targets: ["Raft"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // TLS: already in the graph through grpc-swift-nio-transport (swift-crypto too, above);
        // named here because ClusterSecurity uses them directly, at the versions it resolves to.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // MARK: - What ships (Sources/)

        /// The system libsqlite3 (Debian: libsqlite3-dev), used through raw prepared statements.
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        /// Consensus: a pure core (Core/), durable storage (Storage/), the driver actor (Driver/)
        /// and the transport protocol with an in-memory implementation (Transport/).
        .target(name: "Raft", dependencies: ["CSQLite", logging]),
        /// gRPC serving: `DirectHTTP2ServerTransport` (calls straight from HTTP/2 frames),
        /// `StoppableGRPCServer` (stops grpc-swift HTTP/2 servers without crashing on open connections)
        /// and `HTTP2PingResponder` (answers grpc-go's PINGs, on servers and clients).
        .target(name: "GRPCServing", dependencies: [grpcCore, grpcHTTP2, nioCore, nioPosix, nioHTTP2, nioHPACK]),
        /// The gRPC transport between Raft servers (generated code: scripts/generate-protos.sh).
        .target(name: "RaftGRPC", dependencies: ["Raft", "GRPCServing", grpcCore, grpcHTTP2, grpcProtobuf, swiftProtobuf, nioCore, logging]),
        /// The replicated key-value state machine with etcd semantics (revisions, txn, leases, watches).
        .target(name: "Store", dependencies: ["Raft"]),
        /// etcd's v3 wire types and gRPC stubs (generated code: scripts/generate-protos.sh) and their
        /// conversions to and from the Store module's types, shared by the etcd API we serve and the
        /// client of a real etcd.
        .target(name: "EtcdProto", dependencies: ["Store", grpcCore, grpcProtobuf, swiftProtobuf]),
        /// `--store=etcd`: `EtcdStore`, a ClusterStore over an external etcd's gRPC API.
        .target(name: "EtcdBackend", dependencies: ["Store", "EtcdProto", "GRPCServing", grpcCore, grpcHTTP2, nioCore, logging]),
        /// The etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) served from the built-in
        /// store, so etcdctl and other etcd clients work against the masters.
        .target(
            name: "EtcdAPI",
            dependencies: ["Store", "EtcdProto", "Raft", "GRPCServing", grpcCore, grpcHTTP2, grpcProtobuf, swiftProtobuf, nioCore, logging]
        ),
        /// The internal gRPC protocol between masters (write forwarding) and between workers and
        /// masters (join, heartbeat, assignments, status): generated code only.
        .target(name: "ClusterProto", dependencies: [grpcCore, grpcProtobuf, swiftProtobuf]),
        /// The records master and worker share: tasks, nodes, resources, a worker's task reports,
        /// node ids, and the addresses of (and long-lived gRPC clients to) the cluster's processes.
        /// The worker sees the master only through this and ClusterProto.
        .target(name: "ClusterModel", dependencies: [grpcCore, grpcHTTP2]),
        /// The master: scheduler, health, reconciler, REST API (Hummingbird) and the server
        /// that wires them to the store and the internal gRPC protocol.
        .target(
            name: "Orchestrator",
            dependencies: [
                "ClusterModel", "ClusterProto", "ClusterSecurity", "Store", "Raft", "RaftGRPC", "EtcdAPI", "EtcdBackend", "GRPCServing",
                hummingbird, hummingbirdCore, hummingbirdTLS, nioSSL, grpcCore, grpcHTTP2, logging, serviceLifecycle, crypto,
            ]
        ),
        /// The worker: joins a master, heartbeats, runs assignments through a TaskRuntime
        /// (DockerRuntime over the Engine API, ProcessRuntime).
        .target(
            name: "Agent",
            dependencies: ["ClusterModel", "ClusterProto", "ClusterSecurity", "GRPCServing", asyncHTTPClient, nioCore, grpcCore, grpcHTTP2, logging]
        ),
        /// The cluster's TLS material: identities (`orch://<role>/<name>` URI SANs), a certificate
        /// authority that issues them (`master tls init|issue`), and the loading of CA, certificate and
        /// key files into NIOSSL and grpc-swift-nio-transport configurations for mutual TLS.
        .target(
            name: "ClusterSecurity",
            dependencies: ["GRPCServing", nioSSL, nioTLS, x509, crypto, swiftASN1, nioCore, grpcCore, grpcHTTP2]
        ),
        /// What `master` and `worker` share as processes: flags from `ORCH_` variables, SIGTERM and
        /// SIGINT as a graceful stop.
        .target(name: "CommandLineSupport", dependencies: [argumentParser, logging, unixSignals]),
        /// `master`: the master process (`master --dev` for a one-process trial cluster).
        .executableTarget(
            name: "master", dependencies: ["Orchestrator", "Agent", "ClusterModel", "CommandLineSupport", "ClusterSecurity", argumentParser]
        ),
        /// `worker`: joins the masters and runs tasks.
        .executableTarget(name: "worker", dependencies: ["Agent", "ClusterModel", "ClusterSecurity", "CommandLineSupport", argumentParser]),
        /// orchctl's commands, its HTTP client with failover, config, and output (tables, ages, YAML):
        /// a client of the REST API only, so it depends on no module of the cluster.
        .target(name: "OrchctlKit", dependencies: [argumentParser, asyncHTTPClient, nioCore, nioHTTP1, nioSSL, nioFoundationCompat]),
        /// `orchctl`: the command-line client (commands in OrchctlKit).
        .executableTarget(name: "orchctl", dependencies: ["OrchctlKit"]),

        // MARK: - Benchmarks (Benchmarks/)

        /// Median, percentiles and Duration→seconds for the benchmarks.
        .target(name: "BenchSupport", path: "Benchmarks/BenchSupport"),
        /// `bench raft|storage|scheduler|placement|etcd`: the benchmarks of BENCHMARKS.md.
        .executableTarget(
            name: "bench",
            dependencies: [
                "BenchSupport", "Raft", "Orchestrator", "ClusterModel", "ClusterProto", "ClusterSecurity", "EtcdAPI", "EtcdProto",
                "RaftTestSupport", "EtcdAPITestSupport",
                argumentParser, asyncHTTPClient, grpcCore, grpcHTTP2, nioCore, nioHTTP1, logging,
            ],
            path: "Benchmarks/bench"
        ),

        // MARK: - Tools the tests and benchmarks start as processes (Tools/)

        /// A standalone Raft server (SQLite log, gRPC transport, stdin/stdout control) for the
        /// multi-process tests and `bench raft`.
        .executableTarget(name: "raft-node", dependencies: ["Raft", "RaftGRPC", "BenchSupport", "ClusterSecurity", logging], path: "Tools/raft-node"),
        /// Appends through SQLiteLogStorage and prints what is durable; SIGKILLed by the crash tests.
        .executableTarget(name: "raft-storage-probe", dependencies: ["Raft"], path: "Tools/raft-storage-probe"),
        /// Our 3-replica store serving the etcd API on loopback in a process of its own (the etcd API tests).
        .executableTarget(name: "local-etcd", dependencies: ["EtcdAPITestSupport", logging], path: "Tools/local-etcd"),

        // MARK: - Test support (Tests/Support/)

        /// Drives `raft-node` processes: shared by the integration tests and `bench raft`.
        .target(name: "RaftTestSupport", path: "Tests/Support/RaftTestSupport"),
        /// A real single-member etcd 3.4 on free loopback ports (`EtcdProcess`), for StoreTests and
        /// OrchestratorTests.
        .target(name: "EtcdTestSupport", dependencies: ["EtcdBackend", "Store", "RaftTestSupport"], path: "Tests/Support/EtcdTestSupport"),
        /// `@Suite(.heavy)`: suites that start process clusters, etcd or Docker run one at a time.
        .target(name: "TestGate", path: "Tests/Support/TestGate"),
        /// A 3-replica built-in store serving the etcd API on loopback (RaftStore over the gRPC Raft
        /// transport and SQLite), and a grpc-swift etcd client: shared by EtcdAPITests, `local-etcd`
        /// and `bench etcd`.
        .target(
            name: "EtcdAPITestSupport",
            dependencies: ["EtcdAPI", "EtcdProto", "GRPCServing", "Store", "Raft", "RaftGRPC", "RaftTestSupport", grpcCore, grpcHTTP2, nioCore, logging],
            path: "Tests/Support/EtcdAPITestSupport"
        ),
        /// A linearizability checker (Wing & Gong's search with Lowe's memoisation, split per key as
        /// porcupine does) for register histories of an etcd-style store: put, get, compare-and-set,
        /// operations that timed out. Pure: no clock, no randomness, no I/O; standard library only.
        .target(name: "Linearizability", path: "Tests/Support/Linearizability"),

        // MARK: - Tests (Tests/, IntegrationTests/)

        /// The Raft core (simulated clusters with seeded faults), storage and driver; SQLite crash tests.
        .testTarget(name: "RaftTests", dependencies: ["Raft", "raft-storage-probe", "TestGate"]),
        /// The gRPC Raft transport and the HTTP/2 serving stack.
        .testTarget(name: "RaftGRPCTests", dependencies: ["RaftGRPC", "GRPCServing", "ClusterSecurity", "TestGate", nioCore, nioPosix, nioHTTP2, nioHPACK]),
        /// The key-value state machine, and one conformance suite over the memory, Raft and etcd stores.
        .testTarget(name: "StoreTests", dependencies: ["Store", "EtcdBackend", "EtcdProto", "Raft", "TestGate", "RaftTestSupport", "EtcdTestSupport"]),
        /// The etcd v3 gRPC API, with etcdctl and grpc-go clients against `local-etcd`.
        .testTarget(
            name: "EtcdAPITests",
            dependencies: ["EtcdAPI", "EtcdProto", "GRPCServing", "Store", "Raft", "EtcdAPITestSupport", "local-etcd", "TestGate", grpcCore, nioCore, nioEmbedded, logging]
        ),
        /// The master: scheduler tables, rounds, health, REST API, events, worker service.
        .testTarget(
            name: "OrchestratorTests",
            dependencies: ["Orchestrator", "ClusterModel", "ClusterSecurity", "Raft", "Store", "ClusterProto", "EtcdBackend", "EtcdTestSupport", "RaftTestSupport", "TestGate",
                           hummingbirdTesting, grpcCore, grpcHTTP2, logging]
        ),
        /// The TLS material: issuance (checked with openssl), loading, real TLS 1.3 handshakes on
        /// loopback, `master tls init` and the master's command line.
        .testTarget(
            name: "ClusterSecurityTests",
            dependencies: ["ClusterSecurity", "master", nioSSL, nioTLS, x509, crypto, swiftASN1, nioCore, nioPosix, grpcCore, grpcHTTP2, argumentParser]
        ),
        /// The linearizability checker on hand-made and seeded simulated histories.
        .testTarget(name: "LinearizabilityTests", dependencies: ["Linearizability", "TestGate"]),
        /// The shared records: node ids.
        .testTarget(name: "ClusterModelTests", dependencies: ["ClusterModel"]),
        /// Token files, the listener policy, flags from the environment.
        .testTarget(name: "CommandLineSupportTests", dependencies: ["CommandLineSupport"]),
        /// orchctl's pure parts: tables, ages, YAML, config and flags, SSE parsing, exit codes.
        .testTarget(name: "OrchctlTests", dependencies: ["OrchctlKit", argumentParser]),
        /// The worker: supervisor, runtimes (process, Docker), joining.
        .testTarget(name: "AgentTests", dependencies: ["Agent", "ClusterModel", "TestGate", logging]),
        /// 3 masters and 3 workers as processes on loopback: failover, lost workers, drains.
        .testTarget(
            name: "OrchestratorIntegrationTests",
            dependencies: [
                "master", "worker", "orchctl", "OrchctlKit", "RaftTestSupport", "TestGate", "ClusterProto", "ClusterSecurity",
                "EtcdAPITestSupport", "EtcdProto", "Linearizability", "Raft",
                asyncHTTPClient, grpcCore, grpcHTTP2, nioCore, nioHTTP1, nioSSL, nioFoundationCompat,
            ],
            path: "IntegrationTests/OrchestratorIntegrationTests"
        ),
        /// 3 `raft-node` processes: `kill -9` the leader and lose nothing.
        .testTarget(
            name: "RaftIntegrationTests",
            dependencies: ["RaftTestSupport", "raft-node", "TestGate"],
            path: "IntegrationTests/RaftIntegrationTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
