import Foundation
import Raft
import TestGate
import Testing

/// Snapshot images staged off the Raft loop, trimming in batches, and checkpoints off the writer.
@Suite("SQLiteLogStorage: staged snapshots, trimming and checkpoints", .ownThread)
struct SQLiteSnapshotStagingTests {
    private func path(_ dir: URL) -> String { dir.appendingPathComponent("raft.sqlite").path }

    private func entries(_ range: ClosedRange<UInt64>, term: UInt64, size: Int = 8) -> [Entry] {
        range.map { Entry(term: term, index: $0, data: Array(repeating: UInt8(truncatingIfNeeded: $0), count: size)) }
    }

    @Test("a staged image is kept apart from the log and read back with its snapshot after a reopen")
    func stagedImageRoundTrip() throws {
        try withSQLiteTempDir { dir in
            let image = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let snap = Snapshot(metadata: SnapshotMetadata(index: 6, term: 2, confState: ConfState(voters: [1, 2, 3])), data: image)
            do {
                let storage = try SQLiteLogStorage(path: path(dir))
                defer { storage.close() }
                try storage.save(PersistBatch(entries: entries(1...10, term: 2)))
                try storage.stageSnapshot(index: 6, data: image)
                try storage.save(PersistBatch(snapshot: snap))
            }
            // The log database holds only the metadata: far smaller than the image.
            let logBytes = try FileManager.default.attributesOfItem(atPath: path(dir))[.size] as? Int ?? 0
            let walBytes = (try? FileManager.default.attributesOfItem(atPath: path(dir) + "-wal")[.size] as? Int) ?? 0
            #expect(logBytes + walBytes < image.count / 2, "log database \(logBytes) + WAL \(walBytes) bytes")
            let storage = try SQLiteLogStorage(path: path(dir))
            defer { storage.close() }
            let loaded = try storage.load()
            #expect(loaded.snapshot == snap)
            #expect(loaded.entries == entries(7...10, term: 2))
        }
    }

    @Test("a snapshot whose staged image is gone is reported as corrupt, not loaded empty")
    func missingImageIsCorrupt() throws {
        try withSQLiteTempDir { dir in
            do {
                let storage = try SQLiteLogStorage(path: path(dir))
                defer { storage.close() }
                try storage.save(PersistBatch(entries: entries(1...3, term: 1)))
                try storage.stageSnapshot(index: 2, data: [1, 2, 3])
                try storage.save(PersistBatch(snapshot: Snapshot(metadata: SnapshotMetadata(index: 2, term: 1, confState: ConfState(voters: [1])), data: [1, 2, 3])))
            }
            for suffix in ["-snapshots", "-snapshots-wal", "-snapshots-shm"] {
                try? FileManager.default.removeItem(atPath: path(dir) + suffix)
            }
            let storage = try SQLiteLogStorage(path: path(dir))
            defer { storage.close() }
            #expect(throws: StorageError.self) { try storage.load() }
        }
    }

    @Test("an unstaged snapshot (one sent by the leader) is stored inline, and a later staged one replaces it")
    func inlineThenStaged() throws {
        try withSQLiteTempDir { dir in
            let first = Snapshot(metadata: SnapshotMetadata(index: 4, term: 1, confState: ConfState(voters: [1])), data: [4, 4])
            let second = Snapshot(metadata: SnapshotMetadata(index: 8, term: 1, confState: ConfState(voters: [1])), data: [8, 8, 8])
            let storage = try SQLiteLogStorage(path: path(dir))
            try storage.save(PersistBatch(entries: entries(1...10, term: 1)))
            try storage.save(PersistBatch(snapshot: first))
            #expect(try storage.load().snapshot == first)
            try storage.stageSnapshot(index: 8, data: second.data)
            try storage.save(PersistBatch(snapshot: second))
            storage.close()
            let reopened = try SQLiteLogStorage(path: path(dir))
            defer { reopened.close() }
            let loaded = try reopened.load()
            #expect(loaded.snapshot == second)
            #expect(loaded.entries == entries(9...10, term: 1))
        }
    }

    @Test("entries a snapshot covers are trimmed over later saves; loads never show them")
    func trimmedOverLaterSaves() throws {
        try withSQLiteTempDir { dir in
            let storage = try SQLiteLogStorage(path: path(dir))
            defer { storage.close() }
            try storage.save(PersistBatch(entries: entries(1...9_000, term: 1)))
            let snap = Snapshot(metadata: SnapshotMetadata(index: 8_000, term: 1, confState: ConfState(voters: [1])), data: [1])
            try storage.save(PersistBatch(snapshot: snap))
            // Between the snapshot and the end of trimming (2,000 rows per save), loads agree.
            for next in UInt64(9_001)...9_006 {
                try storage.save(PersistBatch(entries: entries(next...next, term: 1)))
                let loaded = try storage.load()
                #expect(loaded.snapshot == snap)
                #expect(loaded.entries == entries(8_001...next, term: 1))
            }
            let reopened = try SQLiteLogStorage(path: path(dir) )
            defer { reopened.close() }
            #expect(try reopened.load().entries == entries(8_001...9_006, term: 1))
        }
    }

    @Test("the WAL stays bounded while the writer writes: checkpointed by its own connection, the writer's commit as a backstop")
    func walStaysBounded() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("raft-wal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let storage = try SQLiteLogStorage(path: path(dir))
        defer { storage.close() }
        // 64 MB of entries in 1,000 batches, with pauses a checkpoint round can use.
        var index: UInt64 = 1
        for batch in 0..<1_000 {
            try storage.save(PersistBatch(entries: entries(index...(index + 15), term: 1, size: 4_096)))
            index += 16
            if batch % 50 == 49 { try await Task.sleep(for: .milliseconds(60)) }
        }
        let walBytes = try FileManager.default.attributesOfItem(atPath: path(dir) + "-wal")[.size] as? Int ?? 0
        #expect(walBytes < 32 * 1024 * 1024, "WAL is \(walBytes) bytes after 64 MB of entries")
        #expect(try storage.load().entries.count == 16_000)
    }
}
