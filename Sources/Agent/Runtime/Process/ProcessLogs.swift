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
    func sample(only directory: String? = nil) {
        let watched = state.withLock { state in
            directory.map { d in state.watched.filter { $0.key == d } } ?? state.watched
        }
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
}

/// A task's two logs and its timeline, opened once: a reader keeps reading them to their end even
/// after the worker removes the task's directory (a follow racing the removal of a finished task).
final class OpenLogFiles {
    let stdout: Int32, stderr: Int32, timeline: Int32

    init(_ files: ProcessTaskFiles) {
        func openRead(_ path: String) -> Int32 { open(path, O_RDONLY | O_CLOEXEC) }
        let out = openRead(files.stdout)
        // An instance started by a worker from before stdout and stderr were kept apart.
        stdout = out >= 0 ? out : openRead(files.legacyOutput)
        stderr = openRead(files.stderr)
        timeline = openRead(files.timeline)
    }

    deinit {
        for fd in [stdout, stderr, timeline] where fd >= 0 { close(fd) }
    }

    func size(_ fd: Int32) -> Int64 {
        var info = stat()
        return fd >= 0 && fstat(fd, &info) == 0 ? Int64(info.st_size) : 0
    }

    func read(_ fd: Int32, from offset: Int64, limit: Int) -> [UInt8] {
        guard fd >= 0, limit > 0 else { return [] }
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

    /// Where a reader of a process task's output has got to: the offsets read up to in each file
    /// and in the timeline. Only bytes a timeline record covers are read, so every byte has the
    /// same time whoever reads it and whenever (a follow resumed with `since` repeats exactly the
    /// outputs of that instant).
    private struct LogCursor {
        var stdout: Int64
        var stderr: Int64
        var timeline: Int64
    }

    /// The past output and where it ended.
    private func past(taskID: String, query: LogQuery) throws -> (frames: [LogFrame], cursor: LogCursor, files: OpenLogFiles) {
        let instance = try lookup(taskID)
        logSampler.sample(only: instance.files.directory)
        let files = OpenLogFiles(instance.files)
        guard files.stdout >= 0 || files.stderr >= 0 else { throw RuntimeError.notFound(taskID: taskID) }
        let timelineSize = files.size(files.timeline)
        var timelineStart = max(0, timelineSize - Int64(ProcessLogTimeline.readLimit))
        timelineStart -= timelineStart % Int64(ProcessLogTimeline.recordSize)
        let records = ProcessLogTimeline.decode(files.read(files.timeline, from: timelineStart, limit: Int(timelineSize - timelineStart)))
        let cursor = LogCursor(stdout: 0, stderr: 0, timeline: timelineStart)
        let (frames, end) = read(files, from: cursor, records: records, limit: max(0, query.limitBytes), streams: query.streams)
        return (LogSelection.select(frames, query), end, files)
    }

    /// The frames of the bytes past `cursor` that `records` cover (at most the last `limit` of each
    /// stream), and the cursor after them. Without any record (a legacy instance) the bytes are
    /// stamped now.
    /// With `forward`, the first `limit` bytes past the cursor instead of the last (a follow's
    /// pace); the timeline cursor then stays on the first record not wholly read.
    private func read(_ files: OpenLogFiles, from cursor: LogCursor, records: [ProcessLogTimeline.Record], limit: Int,
                      forward: Bool = false, streams: Set<LogStreamKind>) -> ([LogFrame], LogCursor) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let covered = records.last.map { ($0.stdoutSize, $0.stderrSize) }
            ?? (files.timeline >= 0 ? (cursor.stdout, cursor.stderr) : (files.size(files.stdout), files.size(files.stderr)))
        func window(_ fd: Int32, from offset: Int64, to end: Int64, wanted: Bool) -> (bytes: [UInt8], start: Int64) {
            var end = max(offset, min(end, files.size(fd)))
            if forward { end = min(end, offset + Int64(limit)) }
            let start = max(offset, end - Int64(limit))
            guard wanted else { return ([], end) }
            return (files.read(fd, from: start, limit: Int(end - start)), start)
        }
        let out = window(files.stdout, from: cursor.stdout, to: covered.0, wanted: streams.contains(.stdout))
        let err = window(files.stderr, from: cursor.stderr, to: covered.1, wanted: streams.contains(.stderr))
        let frames = ProcessLogTimeline.frames(records: records, stdout: out.bytes, stdoutStart: out.start,
                                               stderr: err.bytes, stderrStart: err.start, now: now)
        var next = LogCursor(stdout: out.start + Int64(out.bytes.count), stderr: err.start + Int64(err.bytes.count),
                             timeline: cursor.timeline)
        let consumed = records.prefix { $0.stdoutSize <= next.stdout && $0.stderrSize <= next.stderr }.count
        next.timeline += Int64((forward ? consumed : records.count) * ProcessLogTimeline.recordSize)
        return (frames, next)
    }

    public func readLogs(taskID: String, query: LogQuery,
                         emit: @Sendable ([LogFrame]) async throws -> Void) async throws -> TaskOutcome? {
        let (past, end, files) = try past(taskID: taskID, query: query)
        if !past.isEmpty { try await emit(past) }
        guard query.follow else { return nil }
        let instance = try lookup(taskID)
        var cursor = end
        while true {
            let running = isRunning(instance)
            logSampler.sample(only: instance.files.directory)
            let timelineSize = files.size(files.timeline)
            let records = ProcessLogTimeline.decode(files.read(files.timeline, from: cursor.timeline,
                                                                         limit: Int(max(0, timelineSize - cursor.timeline))))
            // Both streams are read (the cursor moves through both); the query keeps what it wants.
            let (frames, next) = read(files, from: cursor, records: records, limit: 1 << 20, forward: true, streams: [.stdout, .stderr])
            let progressed = next.stdout != cursor.stdout || next.stderr != cursor.stderr
            cursor = next
            let wanted = frames.filter(query.wants)
            if !wanted.isEmpty { try await emit(wanted) }
            // Everything written before the end was sampled and read in this pass.
            if !running && !progressed {
                // Removed meanwhile (all its output was still read): how it ended is no longer known here.
                return try? outcome(of: instance, taskID: taskID)
            }
            if !progressed { try await Task.sleep(for: Self.followPeriod) }
        }
    }

    /// How often a follow looks for new output.
    static var followPeriod: Duration { .milliseconds(100) }
}
