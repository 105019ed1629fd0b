import Foundation
import Testing
@testable import Agent

@Suite struct DataDirectoryLockTests {
    @Test("one worker per data directory: a second claim is refused with the holder's pid and the flag to use; released when dropped")
    func exclusive() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("orch-lock-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var first: DataDirectoryLock? = try DataDirectoryLock.acquire(dataDir: dir)
        #expect(first != nil)
        do {
            _ = try DataDirectoryLock.acquire(dataDir: dir)
            Issue.record("a second lock on \(dir) was granted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("--data-dir \(dir) is in use by another worker (pid \(getpid()))"), "\(message)")
        }
        first = nil
        #expect(throws: Never.self) { _ = try DataDirectoryLock.acquire(dataDir: dir) }
    }
}
