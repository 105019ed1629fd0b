#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ClusterModel
import ClusterSecurity
import Foundation

/// A final report (completed, failed, cancelled) no master has acknowledged yet.
public struct PendingReport: Sendable, Hashable {
    public var taskID: String
    public var epoch: UInt64
    public var report: TaskReport
    /// Delivery order: reports go out in the order the copies ended, across restarts.
    public var sequence: UInt64

    public init(taskID: String, epoch: UInt64, report: TaskReport, sequence: UInt64) {
        self.taskID = taskID
        self.epoch = epoch
        self.report = report
        self.sequence = sequence
    }
}

/// Why a report could not be kept.
public enum ReportStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    case io(operation: String, path: String, message: String)
    /// Only final reports are kept: a `running` report is re-derived from the runtime on restart.
    case notFinal(taskID: String)

    public var description: String {
        switch self {
        case let .io(operation, path, message): "\(operation) \(path): \(message)"
        case let .notFinal(taskID): "task \(taskID): only completed, failed and cancelled reports are kept"
        }
    }
}

/// The worker's unacknowledged final reports, one small file per copy under
/// `<data-dir>/reports/`, so that a worker that crashes after a copy ended but before a master
/// acknowledged the ending neither runs that copy again nor forgets to report it.
///
/// The order that makes this hold: `save` (written to a temporary file, fsynced, renamed over,
/// directory fsynced) returns before the runtime removes the copy's container or process files;
/// `delete` follows the master's acknowledgement. A crash before `save` leaves the ended copy in
/// the runtime, where adoption finds and reports it; a crash after it leaves this file, which the
/// next start reloads (the epoch counts as ended, the report is sent again); a crash between the
/// acknowledgement and `delete` sends the report twice, which the masters answer as stale.
public struct ReportStore: Sendable {
    public let directory: String

    /// A store in `directory` (created when missing).
    public init(directory: String) throws(ReportStoreError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(operation: "create", path: directory, message: "\(error)")
        }
    }

    /// The file of one copy's report: the task id made file-safe (as the process runtime names
    /// its directories), then the epoch.
    func path(taskID: String, epoch: UInt64) -> String {
        directory + "/" + ProcessTaskFiles.directoryName(for: taskID) + "." + String(epoch) + ".json"
    }

    /// Writes the report durably; when this returns, a crash cannot lose it.
    public func save(_ pending: PendingReport) throws(ReportStoreError) {
        guard let record = Record(pending) else { throw .notFinal(taskID: pending.taskID) }
        let target = path(taskID: pending.taskID, epoch: pending.epoch)
        guard let encoded = try? JSONEncoder().encode(record), !encoded.isEmpty else {
            throw .io(operation: "encode", path: target, message: "the report does not encode as JSON")
        }
        do {
            // Fsynced before the rename, and the directory after it: a crash loses nothing.
            try SecureFiles.writeFile(Array(encoded), to: target, mode: 0o600, durable: true)
        } catch let error as SecureFileError {
            throw .io(operation: "write", path: error.path, message: error.reason)
        } catch {
            throw .io(operation: "write", path: target, message: "\(error)")
        }
    }

    /// Forgets the report of one copy (acknowledged). A missing file is not an error.
    public func delete(taskID: String, epoch: UInt64) {
        // No directory fsync: a deletion lost in a crash only sends the report once more.
        unlink(path(taskID: taskID, epoch: epoch))
    }

    /// Every kept report, oldest first, and the names of files that could not be read (left in
    /// place for a person to look at). Temporary files of interrupted writes are deleted: their
    /// copies were not removed yet, so adoption reports them.
    public func load() -> (reports: [PendingReport], unreadable: [String]) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        var reports: [PendingReport] = []
        var unreadable: [String] = []
        for name in names {
            let full = directory + "/" + name
            if name.contains(".json.tmp") {  // an interrupted write (`SecureFiles` names them <file>.tmp-<pid>)
                unlink(full)
                continue
            }
            guard name.hasSuffix(".json") else { continue }
            guard let data = FileManager.default.contents(atPath: full), let record = try? JSONDecoder().decode(Record.self, from: data),
                  let pending = record.pending else {
                unreadable.append(name)
                continue
            }
            reports.append(pending)
        }
        return (reports.sorted { ($0.sequence, $0.taskID) < ($1.sequence, $1.taskID) }, unreadable)
    }

    /// The file's JSON: `{"task_id", "epoch", "sequence", "state", "exit_code", "reason"}`.
    struct Record: Codable {
        var taskID: String
        var epoch: UInt64
        var sequence: UInt64
        var state: String
        var exitCode: Int?
        var reason: String?

        enum CodingKeys: String, CodingKey {
            case taskID = "task_id", epoch, sequence, state, exitCode = "exit_code", reason
        }

        init?(_ pending: PendingReport) {
            taskID = pending.taskID
            epoch = pending.epoch
            sequence = pending.sequence
            switch pending.report {
            case .running: return nil
            case .completed: state = "completed"
            case .failed(let code, let why):
                state = "failed"
                exitCode = code
                reason = why
            case .cancelled(let why):
                state = "cancelled"
                reason = why
            }
        }

        var pending: PendingReport? {
            let report: TaskReport
            switch state {
            case "completed": report = .completed
            case "failed": report = .failed(exitCode: exitCode, reason: reason ?? "")
            case "cancelled": report = .cancelled(reason: reason ?? "")
            default: return nil
            }
            return PendingReport(taskID: taskID, epoch: epoch, report: report, sequence: sequence)
        }
    }
}
