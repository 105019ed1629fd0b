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

    @Test("after configureAllocator, blocks of 1 MiB and more are mapped on their own, even after a larger one was freed")
    func largeBlocksMapped() throws {
        #expect(MemoryTrimmer.configureAllocator(environment: [:]) == ["mmap_threshold=1048576", "arena_max=4"])
        // Under glibc's own rule this freed 16 MiB block would raise its threshold to 16 MiB, and
        // the 2 MiB block below would come out of an arena, where freeing it can leave a hole
        // that stays resident.
        let big = try #require(malloc(16 << 20))
        memset(big, 1, 16 << 20)
        free(big)
        let large = try #require(malloc(2 << 20)), medium = try #require(malloc(512 << 10))
        defer {
            free(large)
            free(medium)
        }
        #expect(Self.isMapped(large), "a 2 MiB block came out of an arena")
        #expect(!Self.isMapped(medium), "a 512 KiB block was mapped on its own")
    }

    /// Whether glibc mapped the block on its own: bit 1 (`IS_MMAPPED`) of the chunk's size word,
    /// which sits just before the block.
    static func isMapped(_ block: UnsafeMutableRawPointer) -> Bool {
        (block - MemoryLayout<UInt>.size).load(as: UInt.self) & 2 != 0
    }

    @Test("configureAllocator leaves alone what the operator set through the environment")
    func environmentWins() {
        #expect(MemoryTrimmer.configureAllocator(environment: ["MALLOC_ARENA_MAX": "2"]) == ["mmap_threshold=1048576"])
        #expect(MemoryTrimmer.configureAllocator(environment: ["MALLOC_MMAP_THRESHOLD_": "65536"]) == ["arena_max=4"])
        #expect(MemoryTrimmer.configureAllocator(
            environment: ["GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536:glibc.malloc.arena_max=2"]).isEmpty)
    }

    static func residentAnonymousMB() throws -> Double {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") })
        let kilobytes = try #require(Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return kilobytes / 1024
    }
}
#endif
