import ClusterModel
import Foundation
import Logging

/// Reports kept until a master acknowledges them: final ones on disk (`ReportStore`) from the
/// moment their copy ends, reloaded when the worker starts again.
extension WorkerAgent {
    /// Reloads the final reports a previous run of this worker saved and no master acknowledged:
    /// they go out first, and their epochs never run again here.
    func loadPendingReports() {
        do {
            reportStore = try ReportStore(directory: config.dataDir + "/reports")
        } catch {
            logger.error("cannot keep reports on disk (\(error)): ended tasks are removed only once a master acknowledges them")
            return
        }
        guard let reportStore else { return }
        let (reports, unreadable) = reportStore.load()
        for name in unreadable {
            logger.error("ignoring an unreadable saved report", metadata: ["file": "\(reportStore.directory)/\(name)"])
        }
        for report in reports {
            supervisor.recovered(taskID: report.taskID, epoch: report.epoch)
        }
        if !reports.isEmpty {
            logger.notice("reports saved before a restart are delivered first", metadata: ["count": "\(reports.count)"])
        }
        pendingReports = reports + pendingReports
        reportSequence = max(reportSequence, (reports.map(\.sequence).max() ?? 0) + 1)
    }

    /// Queues a report for the reporter; a final one is saved first. Returns false when a final
    /// report could not be saved: the caller keeps the copy in the runtime (adoption finds it
    /// after a crash) until the report is acknowledged.
    func queue(_ report: TaskReport, taskID: String, epoch: UInt64) -> Bool {
        let pending = PendingReport(taskID: taskID, epoch: epoch, report: report, sequence: reportSequence)
        reportSequence += 1
        pendingReports.append(pending)
        reportWaiter?.resume()
        reportWaiter = nil
        guard report != .running else { return true }
        do {
            guard let reportStore else { throw ReportStoreError.io(operation: "save", path: config.dataDir + "/reports", message: "no report directory") }
            try reportStore.save(pending)
            return true
        } catch {
            logger.error("cannot save the report of task \(taskID) (epoch \(epoch)): \(error)")
            removeAfterAck[taskID] = epoch
            return false
        }
    }

    /// A master acknowledged `report`: forget it on disk, and remove a copy that was kept for it.
    func acknowledgedReport(_ report: PendingReport) {
        guard report.report != .running else { return }
        reportStore?.delete(taskID: report.taskID, epoch: report.epoch)
        if removeAfterAck[report.taskID] == report.epoch {
            removeAfterAck[report.taskID] = nil
            perform([.remove(taskID: report.taskID)])
        }
    }
}
