import ClusterModel
import Foundation
import Testing
@testable import Agent

@Suite struct ReportStoreTests {
    static func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("reports-\(UUID().uuidString.prefix(8))").path
    }

    @Test("saved reports come back in the order the copies ended, from a new store on the same directory; deleted ones do not")
    func roundTrip() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ReportStore(directory: dir)
        let reports = [
            PendingReport(taskID: "t-b", epoch: 3, report: .failed(exitCode: 2, reason: "exit code 2"), sequence: 7),
            PendingReport(taskID: "t-a", epoch: 1, report: .completed, sequence: 8),
            PendingReport(taskID: "t/odd id", epoch: 2, report: .cancelled(reason: "stopped on the worker"), sequence: 9),
            PendingReport(taskID: "t-a", epoch: 2, report: .failed(exitCode: nil, reason: Supervisor.fencedReason), sequence: 10),
        ]
        for r in reports.reversed() { try store.save(r) }
        #expect(try ReportStore(directory: dir).load().reports == reports)
        store.delete(taskID: "t-a", epoch: 1)
        store.delete(taskID: "t-a", epoch: 1)  // twice: no error
        #expect(try ReportStore(directory: dir).load().reports == reports.filter { !($0.taskID == "t-a" && $0.epoch == 1) })
        // One file per copy, readable by the worker only; nothing escapes the directory.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["t%2Fodd%20id.2.json", "t-a.2.json", "t-b.3.json"])
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/t-b.3.json")[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test("running reports are not kept: a restarted worker learns that from the runtime")
    func runningRefused() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ReportStore(directory: dir)
        #expect(throws: ReportStoreError.notFinal(taskID: "t")) {
            try store.save(PendingReport(taskID: "t", epoch: 1, report: .running, sequence: 1))
        }
        #expect(store.load().reports.isEmpty)
    }

    @Test("an interrupted write (a leftover temporary file) is discarded; an unreadable file is named and left alone")
    func damagedFiles() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ReportStore(directory: dir)
        try store.save(PendingReport(taskID: "ok", epoch: 1, report: .completed, sequence: 1))
        _ = FileManager.default.createFile(atPath: dir + "/half.1.json.tmp", contents: Data("{\"task_id\":".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/junk.1.json", contents: Data("not json".utf8))
        let (reports, unreadable) = store.load()
        #expect(reports.map(\.taskID) == ["ok"])
        #expect(unreadable == ["junk.1.json"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/half.1.json.tmp"))
        #expect(FileManager.default.fileExists(atPath: dir + "/junk.1.json"))
    }

    @Test("a directory that cannot be written makes save fail with the path, so the caller keeps the copy")
    func unwritable() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ReportStore(directory: dir)
        try FileManager.default.removeItem(atPath: dir)
        _ = FileManager.default.createFile(atPath: dir, contents: Data())  // a file where the directory was
        #expect {
            try store.save(PendingReport(taskID: "t", epoch: 1, report: .completed, sequence: 1))
        } throws: { error in
            guard case .io(_, let path, _) = error as? ReportStoreError else { return false }
            return path.hasPrefix(dir)
        }
    }
}
