#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Synchronization

/// When a process task's two log files grew: records of (time, stdout size, stderr size), 24 bytes
/// each, appended to `<task dir>/log-timeline` by `ProcessLogSampler`. The process writes its files
/// itself (so its output survives a worker restart), so this is how its bytes get times: bytes up
/// to a record's sizes, past the previous record's, were written by the record's time. Output of one
/// period reads as stdout first, then stderr.
struct ProcessLogTimeline {
    struct Record: Equatable {
        var unixMs: Int64
        var stdoutSize: Int64
        var stderrSize: Int64
    }

    static let recordSize = 24
    /// The newest records read: 1 MiB, about three hours of output growing in every period. Older
    /// bytes take the time of the oldest record read.
    static let readLimit = 1 << 20

    static func encode(_ record: Record) -> [UInt8] {
        var out: [UInt8] = []
        for value in [record.unixMs, record.stdoutSize, record.stderrSize] {
            withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    static func decode(_ data: [UInt8]) -> [Record] {
        let usable = data.count - data.count % recordSize
        return stride(from: 0, to: usable, by: recordSize).map { at in
            func int(_ start: Int) -> Int64 {
                Int64(bitPattern: data[(at + start)..<(at + start + 8)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            }
            return Record(unixMs: int(0), stdoutSize: int(8), stderrSize: int(16))
        }
    }

    /// Cuts the bytes of each stream (`stdout` from offset `stdoutStart`, `stderr` from `stderrStart`)
    /// into frames by the records; bytes past the last record are stamped `now`. Pure.
    static func frames(records: [Record], stdout: [UInt8], stdoutStart: Int64, stderr: [UInt8], stderrStart: Int64,
                       now: Int64) -> [LogFrame] {
        var frames: [LogFrame] = []
        var sent = (out: stdoutStart, err: stderrStart)
        func cut(_ bytes: [UInt8], start: Int64, from: Int64, to: Int64) -> [UInt8] {
            let lower = max(from, start), upper = min(to, start + Int64(bytes.count))
            guard upper > lower else { return [] }
            return Array(bytes[Int(lower - start)..<Int(upper - start)])
        }
        let end = Record(unixMs: now, stdoutSize: stdoutStart + Int64(stdout.count), stderrSize: stderrStart + Int64(stderr.count))
        for record in records + [end] {
            let out = cut(stdout, start: stdoutStart, from: sent.out, to: record.stdoutSize)
            if !out.isEmpty { frames.append(LogFrame(stream: .stdout, unixMs: record.unixMs, bytes: out)) }
            let err = cut(stderr, start: stderrStart, from: sent.err, to: record.stderrSize)
            if !err.isEmpty { frames.append(LogFrame(stream: .stderr, unixMs: record.unixMs, bytes: err)) }
            sent = (max(sent.out, record.stdoutSize), max(sent.err, record.stderrSize))
        }
        return frames
    }
}

/// Appends a timeline record for each watched task whose logs grew, every `period`, on a task of
/// its own; stopped by `stop()` or when the runtime goes away.
final class ProcessLogSampler: Sendable {
    static let period = Duration.milliseconds(250)
    private struct State {
        var watched: [String: (files: ProcessTaskFiles, sizes: (Int64, Int64))] = [:]
        var loop: Task<Void, Never>?
        var stopped = false
    }
    private let state = Mutex(State())

    deinit { stop() }

    func watch(_ files: ProcessTaskFiles) {
        state.withLock { state in
            guard !state.stopped, state.watched[files.directory] == nil else { return }
            state.watched[files.directory] = (files, (-1, -1))
            if state.loop == nil {
                state.loop = Task.detached { [weak self] in
                    while !Task.isCancelled {
                        guard let self else { return }
                        self.sample()
                        try? await Task.sleep(for: Self.period)
                    }
                }
            }
        }
    }

    func forget(_ files: ProcessTaskFiles) {
        state.withLock { _ = $0.watched.removeValue(forKey: files.directory) }
    }

    func stop() {
        let loop = state.withLock { state in
            state.stopped = true
            defer { state.loop = nil }
            return state.loop
        }
        loop?.cancel()
    }

    /// One pass: a record for each watched task whose logs grew since the last (read on the spot
    /// before past output is read, so bytes written just before a request have their time).
    func sample() {
        let watched = state.withLock { $0.watched }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for (directory, entry) in watched {
            guard FileManager.default.fileExists(atPath: directory) else {
                state.withLock { _ = $0.watched.removeValue(forKey: directory) }
                continue
            }
            let sizes = (ProcessLogFiles.size(entry.files.stdout), ProcessLogFiles.size(entry.files.stderr))
            guard sizes.0 != entry.sizes.0 || sizes.1 != entry.sizes.1 else { continue }
            // A first pass after a (re)start writes a record even when nothing grew: harmless.
            let record = ProcessLogTimeline.Record(unixMs: now, stdoutSize: sizes.0, stderrSize: sizes.1)
            ProcessLogFiles.append(ProcessLogTimeline.encode(record), to: entry.files.timeline)
            state.withLock { state in
                if state.watched[directory] != nil { state.watched[directory]?.sizes = sizes }
            }
        }
    }
}

/// Small file operations of the log readers.
enum ProcessLogFiles {
    static func size(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// Appends to an existing file only: a sampler racing a removal must not put a file back into
    /// a directory being deleted (`start` creates the timeline).
    static func append(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The bytes of `path` from `offset` on, at most `limit`; empty when it is missing.
    static func read(_ path: String, from offset: Int64, limit: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, limit - filled, off_t(offset) + off_t(filled)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            filled += n
        }
        return Array(bytes[0..<filled])
    }
}

extension ProcessRuntime {
    /// The past output `query` selects, as frames in the order written.
    func pastFrames(taskID: String, query: LogQuery) throws -> [LogFrame] {
        try past(taskID: taskID, query: query).frames
    }

    /// The past output and the offsets it was read up to in each file, where a follow goes on.
    private func past(taskID: String, query: LogQuery) throws -> (frames: [LogFrame], end: (out: Int64, err: Int64)) {
        let instance = try lookup(taskID)
        let files = instance.files
        guard FileManager.default.fileExists(atPath: files.directory) else { throw RuntimeError.notFound(taskID: taskID) }
        logSampler.sample()
        // An instance started by a worker from before stdout and stderr were kept apart.
        let stdoutPath = FileManager.default.fileExists(atPath: files.stdout) ? files.stdout : files.legacyOutput
        let limit = max(0, query.limitBytes)
        func window(_ path: String, wanted: Bool) -> (bytes: [UInt8], start: Int64) {
            let size = ProcessLogFiles.size(path)
            guard wanted else { return ([], size) }
            let start = max(0, size - Int64(limit))
            return (ProcessLogFiles.read(path, from: start, limit: Int(size - start)), start)
        }
        let out = window(stdoutPath, wanted: query.streams.contains(.stdout))
        let err = window(files.stderr, wanted: query.streams.contains(.stderr))
        let timelineSize = ProcessLogFiles.size(files.timeline)
        let timelineStart = max(0, timelineSize - Int64(ProcessLogTimeline.readLimit))
        let records = ProcessLogTimeline.decode(ProcessLogFiles.read(files.timeline, from: timelineStart - timelineStart % 24,
                                                                     limit: Int(timelineSize - timelineStart + 24)))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let frames = ProcessLogTimeline.frames(records: records, stdout: out.bytes, stdoutStart: out.start,
                                               stderr: err.bytes, stderrStart: err.start, now: now)
        return (LogSelection.select(frames, query),
                (out.start + Int64(out.bytes.count), err.start + Int64(err.bytes.count)))
    }

    public func readLogs(taskID: String, query: LogQuery,
                         emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> TaskOutcome? {
        let (past, end) = try past(taskID: taskID, query: query)
        if !past.isEmpty { try await emit(past) }
        guard query.follow else { return nil }
        let instance = try lookup(taskID)
        let files = instance.files
        let stdoutPath = FileManager.default.fileExists(atPath: files.stdout) ? files.stdout : files.legacyOutput
        // New output is what lies past the offsets the past output was read up to.
        var sent = end
        while true {
            let running = isRunning(instance)
            var frames: [LogFrame] = []
            var progressed = false
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for (stream, path) in [(LogStreamKind.stdout, stdoutPath), (.stderr, files.stderr)] {
                let offset = stream == .stdout ? sent.out : sent.err
                let bytes = ProcessLogFiles.read(path, from: offset, limit: 1 << 20)
                guard !bytes.isEmpty else { continue }
                progressed = true
                if stream == .stdout { sent.out += Int64(bytes.count) } else { sent.err += Int64(bytes.count) }
                let frame = LogFrame(stream: stream, unixMs: now, bytes: bytes)
                if query.wants(frame) { frames.append(frame) }
            }
            if !frames.isEmpty { try await emit(frames) }
            // Everything written before the end was read in this pass.
            if !running && !progressed {
                guard FileManager.default.fileExists(atPath: files.directory) else { return nil }
                return try outcome(of: instance, taskID: taskID)
            }
            if !progressed { try await Task.sleep(for: Self.followPeriod) }
        }
    }

    /// How often a follow looks for new output.
    static var followPeriod: Duration { .milliseconds(100) }
}
