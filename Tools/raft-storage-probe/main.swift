// A crash-test subject for SQLiteLogStorage (driven by Tests/RaftTests/SQLiteCrashTests.swift).
//
// Usage: raft-storage-probe DB_PATH [BATCH_SIZE] [MAX_INDEX]
//
// Appends batches of term-1 entries after whatever the database already holds, and after each
// `save` returns prints `acked <last index>` on stdout. A line is written only once its entries are
// durable, so a test that SIGKILLs this process at any moment must find every acked index on reopen.
// Entry i carries `probePayload(i)` so the test can check the bytes, not only the count.
// MAX_INDEX bounds the run so a probe whose test died cannot fill the disk; if the test dies its end
// of the pipe closes and the next write kills the probe with SIGPIPE anyway.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Raft

/// 256 bytes that depend on every bit of `index` (the test recomputes them).
func probePayload(_ index: UInt64) -> [UInt8] {
    var x = index &* 0x9E37_79B9_7F4A_7C15
    return (0..<256).map { i in
        x ^= x >> 29
        x = x &* 0xBF58_476D_1CE4_E5B9
        return UInt8(truncatingIfNeeded: x >> 32) ^ UInt8(i)
    }
}

/// Writes the whole line straight to fd 1: no stdio buffer, so a line the test sees was really
/// written after the save returned, and nothing acked sits in a buffer when SIGKILL arrives.
func emit(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            exit(3) // the reader is gone
        }
        offset += n
    }
    bytes.removeAll()
}

func fail(_ message: String) -> Never {
    var line = Array("raft-storage-probe: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    line.removeAll()
    exit(1)
}

let args = CommandLine.arguments
guard args.count >= 2 else { fail("usage: raft-storage-probe DB_PATH [BATCH_SIZE] [MAX_INDEX]") }
let path = args[1]
let batchSize = args.count > 2 ? (Int(args[2]) ?? 0) : 10
let maxIndex = args.count > 3 ? (UInt64(args[3]) ?? 0) : 1_000_000
guard batchSize > 0, maxIndex > 0 else { fail("BATCH_SIZE and MAX_INDEX must be positive integers") }

do {
    let storage = try SQLiteLogStorage(path: path)
    let state = try storage.load()
    var last = state.entries.last?.index ?? state.snapshot.metadata.index
    emit("ready \(last)")
    while last < maxIndex {
        let first = last + 1
        let end = min(last + UInt64(batchSize), maxIndex)
        let entries = (first...end).map { Entry(term: 1, index: $0, data: probePayload($0)) }
        try storage.save(PersistBatch(entries: entries, hardState: HardState(term: 1, vote: 1, commit: end)))
        last = end
        emit("acked \(last)")
    }
    storage.close()
    emit("done \(last)")
} catch {
    fail("\(error)")
}
