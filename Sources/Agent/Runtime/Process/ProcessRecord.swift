import Foundation

/// What `ProcessRuntime` keeps on disk per task instance (`<task dir>/state.json`): enough for a
/// new runtime after a worker restart to find the process again and to say how it ended.
struct ProcessRecord: Codable, Sendable, Hashable {
    var taskID: String
    var epoch: UInt64
    var name: String
    var command: [String]
    /// The pid of the instance's shell wrapper, which leads the instance's process group; 0 while
    /// the instance is being started.
    var pid: Int32
    /// The wrapper's start time in clock ticks since boot: a recycled pid has another.
    var startTicks: UInt64
    /// Set by `stop` before any signal, so the outcome is `.cancelled` whoever observes the end.
    var cancelled: Bool
    /// Seconds since 1970.
    var startedAt: Double

    enum CodingKeys: String, CodingKey {
        case taskID = "task_id", epoch, name, command, pid
        case startTicks = "start_ticks", cancelled
        case startedAt = "started_at"
    }
}

/// Where a task instance's files live: `<root>/tasks/<encoded task id>/`.
struct ProcessTaskFiles: Sendable {
    let directory: String

    var record: String { directory + "/state.json" }
    /// Written by the wrapper shell when the command ends: its exit code, in decimal.
    var exitStatus: String { directory + "/exit-status" }
    /// stdout and stderr of the command, from workers before the two were kept apart (read as stdout).
    var legacyOutput: String { directory + "/output.log" }
    var stdout: String { directory + "/stdout.log" }
    var stderr: String { directory + "/stderr.log" }
    /// When the two logs grew: `ProcessLogTimeline` records.
    var timeline: String { directory + "/log-timeline" }
    /// The command's working directory.
    var work: String { directory + "/work" }

    func readRecord() throws -> ProcessRecord? {
        guard let data = FileManager.default.contents(atPath: record) else { return nil }
        return try JSONDecoder().decode(ProcessRecord.self, from: data)
    }

    /// Replaces the record atomically (a new file renamed over the old one).
    func write(_ value: ProcessRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(value).write(to: URL(fileURLWithPath: record), options: .atomic)
    }

    /// The exit code the wrapper recorded, if it did.
    func readExitStatus() -> Int32? {
        guard let text = ProcessSystem.readSmallFile(exitStatus, limit: 64) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A directory name for `taskID` that maps back to one task id only: characters other than
    /// letters, digits, `-` and `_` are written `%XX`; ids too long for a file name are shortened
    /// and suffixed with a hash of the whole id (the record inside names the task in full).
    static func directoryName(for taskID: String) -> String {
        var name = ""
        for byte in taskID.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                name.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                name += String(format: "%%%02X", byte)
            }
        }
        guard name.utf8.count > 180 else { return name }
        // FNV-1a: stable across runs and platforms, unlike Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in taskID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(name.prefix(160)) + "~" + String(hash, radix: 16)
    }
}
