// Append throughput of SQLiteLogStorage (WAL, synchronous=FULL): one `save` = one transaction = one
// fsync, so throughput is bounded by syncs/s at small batches and by row inserts at large ones.
//
// Usage (release build): bench storage [RUNS] [DIR]
//   RUNS  runs per batch size (default 5); the median is reported
//   DIR   where the temporary databases go (default: the system temp directory); put it on the disk
//         whose fsync you want to measure
import ArgumentParser
import BenchSupport
import Foundation
import Raft

struct StorageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Append throughput of SQLiteLogStorage (WAL, synchronous=FULL) by batch size."
    )

    @Argument(help: "Runs per batch size; the median is reported.")
    var runs = 5
    @Argument(help: "Where the temporary databases go (default: the system temp directory): put it on the disk whose fsync you want to measure.")
    var dir: String?

    /// Batch sizes (entries per save) and the fixed number of entries written per run at each size:
    /// enough for a stable rate, bounded so a run takes a second or two.
    static let cases: [(batchSize: Int, entries: Int)] = [(1, 2_000), (10, 20_000), (100, 200_000)]
    static let payloadSize = 256

    struct Rates {
        var entriesPerSecond: Double
        var syncsPerSecond: Double
    }

    func run() throws {
        let runs = max(1, runs)
        let baseDir = dir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? FileManager.default.temporaryDirectory
        print("SQLiteLogStorage append, \(Self.payloadSize)-byte entries, \(runs) runs per batch size, median")
        print("batch size | entries/run | entries/s | syncs/s")
        do {
            for (batchSize, total) in Self.cases {
                var results: [Rates] = []
                for _ in 0..<runs {
                    results.append(try Self.measure(batchSize: batchSize, entries: total, in: baseDir))
                }
                let entries = median(results.map(\.entriesPerSecond))
                let syncs = median(results.map(\.syncsPerSecond))
                print("\(batchSize) | \(total) | \(Int(entries.rounded())) | \(Int(syncs.rounded()))")
            }
        } catch {
            FileHandle.standardError.write(Data("bench storage: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func measure(batchSize: Int, entries total: Int, in baseDir: URL) throws -> Rates {
        let dir = baseDir.appendingPathComponent("raft-bench-storage-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let storage = try SQLiteLogStorage(path: dir.appendingPathComponent("raft.sqlite").path)
        defer { storage.close() }

        // Build every batch before the clock starts: only storage is measured.
        let batches: [PersistBatch] = stride(from: 1, through: total, by: batchSize).map { first in
            let last = min(first + batchSize - 1, total)
            return PersistBatch(entries: (first...last).map { index in
                Entry(term: 1, index: UInt64(index), data: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: payloadSize))
            })
        }
        let clock = ContinuousClock()
        let start = clock.now
        for batch in batches {
            try storage.save(batch)
        }
        let seconds = (clock.now - start).inSeconds
        return Rates(entriesPerSecond: Double(total) / seconds, syncsPerSecond: Double(batches.count) / seconds)
    }
}
