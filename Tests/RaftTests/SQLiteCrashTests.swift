import Foundation
import Raft
import TestGate
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Kills a real process that is appending through `SQLiteLogStorage` and checks that everything it
/// acknowledged survived. The subject is the `raft-storage-probe` executable of this package, which
/// `swift test` builds next to the test bundle.
@Suite("SQLite crash safety", .ownThread)
struct SQLiteCrashTests {
    /// One kill: how many new acks to wait for, the probe's batch size, and how many further ack lines
    /// to let pass before the kill, so the SIGKILL lands at different points of the write loop.
    struct Round {
        var acks: UInt64
        var batchSize: Int
        var extraLines: Int
    }

    @Test("every acked entry survives SIGKILL, and the log stays contiguous")
    func ackedEntriesSurviveSIGKILL() throws {
        let probe = try #require(Self.locateProbe(), """
            raft-storage-probe not found next to the test bundle (looked around \(CommandLine.arguments[0]) \
            and \(Bundle.main.bundleURL.path)); build it with `swift build --product raft-storage-probe`
            """)
        let rounds = [
            Round(acks: 0, batchSize: 10, extraLines: 0), // killed right after it opened the database
            Round(acks: 25, batchSize: 1, extraLines: 0), // one fsync per entry
            Round(acks: 200, batchSize: 10, extraLines: 3),
            Round(acks: 1_500, batchSize: 100, extraLines: 0),
            Round(acks: 40, batchSize: 7, extraLines: 11),
        ]
        try withSQLiteTempDir { dir throws in
            let path = dir.appendingPathComponent("raft.sqlite").path
            var acked: UInt64 = 0
            for (n, round) in rounds.enumerated() {
                acked = try killOnce(probe: probe, path: path, round: round, previouslyAcked: acked, label: "round \(n + 1)")
                try verify(path: path, acked: acked, label: "round \(n + 1)")
            }
            #expect(acked >= 1_700)
        }
    }

    /// Runs the probe until it acked `round.acks` more entries (plus `extraLines` lines), SIGKILLs it,
    /// and returns the highest index it acked.
    private func killOnce(probe: URL, path: String, round: Round, previouslyAcked: UInt64, label: String) throws -> UInt64 {
        let process = Process()
        process.executableURL = probe
        // The bound only stops a probe whose test died; a round ends far below it.
        process.arguments = [path, String(round.batchSize), String(previouslyAcked + 5_000_000)]
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        var killed = false
        defer {
            // Never leave a probe behind, whatever failed.
            if !killed { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        let reader = LineReader(fd: stdout.fileHandleForReading.fileDescriptor)
        let deadline = ContinuousClock.now + .seconds(60)
        func nextLine() throws -> String {
            guard let line = try reader.nextLine(deadline: deadline) else {
                let errors = String(decoding: stderr.fileHandleForReading.availableData, as: UTF8.self)
                throw ProbeError("\(label): probe closed stdout early; stderr: \(errors)")
            }
            return line
        }

        let ready = try nextLine()
        guard ready.hasPrefix("ready "), let start = UInt64(ready.dropFirst(6)) else {
            throw ProbeError("\(label): unexpected first line \(ready)")
        }
        // Entries written after the last ack of the previous round may have reached the disk too.
        #expect(start >= previouslyAcked, "\(label): the log shrank from \(previouslyAcked) to \(start)")

        var acked = previouslyAcked
        var extra = 0
        while acked < previouslyAcked + round.acks || extra < round.extraLines {
            if acked >= previouslyAcked + round.acks { extra += 1 }
            let line = try nextLine()
            guard line.hasPrefix("acked "), let index = UInt64(line.dropFirst(6)) else {
                throw ProbeError("\(label): unexpected line \(line)")
            }
            acked = index
        }
        kill(process.processIdentifier, SIGKILL)
        killed = true
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "\(label): the probe exited by itself")
        #expect(process.terminationStatus == SIGKILL, "\(label): probe status \(process.terminationStatus)")
        return acked
    }

    /// Reopens the database the killed probe left (with its WAL) and checks what it holds.
    private func verify(path: String, acked: UInt64, label: String) throws {
        let storage = try SQLiteLogStorage(path: path)
        defer { storage.close() }
        let state = try storage.load() // throws .corrupt on a gap
        let last = state.entries.last?.index ?? 0
        #expect(last >= acked, "\(label): acked \(acked) but the log ends at \(last)")
        #expect(state.entries.first?.index ?? 1 == 1, "\(label): the log does not start at 1")
        var bad = 0
        for (offset, entry) in state.entries.enumerated() {
            if entry.index != UInt64(offset + 1) || entry.term != 1 || entry.data != probePayload(entry.index) {
                bad += 1
            }
        }
        #expect(bad == 0, "\(label): \(bad) entries have a wrong index, term or payload")
        // The probe saves the hard state in the same batch as the entries: atomic batches keep them equal.
        #expect(state.hardState.commit == last, "\(label): commit \(state.hardState.commit) but last entry \(last)")
    }

    /// The probe binary: `swift test` puts executables in the same products directory as the test
    /// bundle (`.build/<triple>/debug/`). On Linux the bundle is an executable in that directory; on
    /// macOS it is `X.xctest/Contents/MacOS/X`, a few levels below it.
    static func locateProbe() -> URL? {
        var starts = [
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent(),
            Bundle.main.bundleURL,
        ]
        if let exe = Bundle.main.executableURL { starts.append(exe.deletingLastPathComponent()) }
        for start in starts {
            var dir = start
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("raft-storage-probe")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        return nil
    }
}

/// The probe's payload for entry `index` (a copy of `probePayload` in Tools/raft-storage-probe).
private func probePayload(_ index: UInt64) -> [UInt8] {
    var x = index &* 0x9E37_79B9_7F4A_7C15
    return (0..<256).map { i in
        x ^= x >> 29
        x = x &* 0xBF58_476D_1CE4_E5B9
        return UInt8(truncatingIfNeeded: x >> 32) ^ UInt8(i)
    }
}

private struct ProbeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads lines from a pipe with a deadline: `poll` waits for data, so the test never sleeps and a
/// hung probe fails the test instead of hanging it.
private final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    /// The next line without its newline; nil at end of file; throws when `deadline` passes first.
    func nextLine(deadline: ContinuousClock.Instant) throws -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let remaining = deadline - .now
            guard remaining > .zero else { throw ProbeError("no line from the probe before the deadline") }
            let ms = Int32(clamping: remaining.components.seconds * 1_000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, ms)
            if ready < 0 {
                if errno == EINTR { continue }
                throw ProbeError("poll failed: errno \(errno)")
            }
            if ready == 0 { continue } // timed out: the deadline check above throws
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw ProbeError("read failed: errno \(errno)")
            }
            if n == 0 { return nil }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}
