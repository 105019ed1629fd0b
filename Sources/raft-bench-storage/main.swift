// Append throughput of SQLiteLogStorage (WAL, synchronous=FULL): one `save` = one transaction = one
// fsync, so throughput is bounded by syncs/s at small batches and by row inserts at large ones.
//
// Usage (release build): raft-bench-storage [RUNS] [DIR]
//   RUNS  runs per batch size (default 5); the median is reported
//   DIR   where the temporary databases go (default: the system temp directory); put it on the disk
//         whose fsync you want to measure

import Foundation
import Raft

let runs = CommandLine.arguments.count > 1 ? max(1, Int(CommandLine.arguments[1]) ?? 5) : 5
let baseDir = CommandLine.arguments.count > 2
    ? URL(fileURLWithPath: CommandLine.arguments[2], isDirectory: true)
    : FileManager.default.temporaryDirectory

/// Batch sizes (entries per save) and the fixed number of entries written per run at each size:
/// enough for a stable rate, bounded so a run takes a second or two.
let cases: [(batchSize: Int, entries: Int)] = [(1, 2_000), (10, 20_000), (100, 200_000)]
let payloadSize = 256

struct Result {
    var entriesPerSecond: Double
    var syncsPerSecond: Double
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1
        ? sorted[sorted.count / 2]
        : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func runOnce(batchSize: Int, entries total: Int) throws -> Result {
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
    let elapsed = clock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return Result(entriesPerSecond: Double(total) / seconds, syncsPerSecond: Double(batches.count) / seconds)
}

func format(_ value: Double) -> String {
    String(Int(value.rounded()))
}

print("SQLiteLogStorage append, \(payloadSize)-byte entries, \(runs) runs per batch size, median")
print("batch size | entries/run | entries/s | syncs/s")
do {
    for (batchSize, total) in cases {
        var results: [Result] = []
        for _ in 0..<runs {
            results.append(try runOnce(batchSize: batchSize, entries: total))
        }
        let entries = median(results.map(\.entriesPerSecond))
        let syncs = median(results.map(\.syncsPerSecond))
        print("\(batchSize) | \(total) | \(format(entries)) | \(format(syncs))")
    }
} catch {
    FileHandle.standardError.write(Data("raft-bench-storage: \(error)\n".utf8))
    exit(1)
}
