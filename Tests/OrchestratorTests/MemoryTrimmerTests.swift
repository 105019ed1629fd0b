#if canImport(Glibc)
import Foundation
import Glibc
@testable import Orchestrator
import Testing

/// `MemoryTrimmer.trim()` returns the free pages between live blocks, which glibc keeps otherwise.
@Suite struct MemoryTrimmerTests {
    @Test("free pages between live blocks go back to the system on a trim")
    func trimReturnsFreePages() throws {
        // 256 MB in 4 KB blocks, then every block freed but one in 32: the free space lies between
        // live blocks, where glibc never returns it by itself.
        let blocks = 65_536
        var pointers: [UnsafeMutableRawPointer] = []
        pointers.reserveCapacity(blocks)
        for _ in 0..<blocks {
            let p = try #require(malloc(4096))
            memset(p, 1, 4096)  // resident, not just reserved
            pointers.append(p)
        }
        for (i, p) in pointers.enumerated() where i % 32 != 0 { free(p) }
        let before = try Self.residentAnonymousMB()
        MemoryTrimmer.trim()
        let after = try Self.residentAnonymousMB()
        for (i, p) in pointers.enumerated() where i % 32 == 0 { free(p) }
        // About 248 MB were freed; other suites allocate meanwhile, so ask for well under that.
        #expect(before - after > 100, "resident anonymous memory \(before) MB before the trim, \(after) MB after")
    }

    static func residentAnonymousMB() throws -> Double {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") })
        let kilobytes = try #require(Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return kilobytes / 1024
    }
}
#endif
