// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Orchestrator",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Raft", targets: ["Raft"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        /// The system libsqlite3 (Debian: libsqlite3-dev), used through raw prepared statements.
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        /// Consensus: a pure core (Core/), durable storage (Storage/), the driver actor (Driver/)
        /// and the transport protocol with an in-memory implementation (Transport/).
        .target(
            name: "Raft",
            dependencies: [
                "CSQLite",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "RaftTests", dependencies: ["Raft"]),
        /// Appends through SQLiteLogStorage and prints what is durable; SIGKILLed by the crash tests.
        .executableTarget(name: "raft-storage-probe", dependencies: ["Raft"]),
        /// Release-mode append throughput of SQLiteLogStorage (BENCHMARKS.md).
        .executableTarget(name: "raft-bench-storage", dependencies: ["Raft"]),
    ],
    swiftLanguageModes: [.v6]
)
