#if canImport(Glibc)
import Glibc
#endif

/// Hands the C allocator's free memory back to the system every `interval`.
///
/// glibc's malloc gives each busy thread an arena, a chain of 64 MB heaps, and returns little of
/// what is freed inside them: only the free space at the top of a heap, never the free pages
/// between live blocks. A master under churn allocates and frees steadily (records decoded and
/// dropped, snapshot images, Raft batches) on many threads, so its resident memory rose with the
/// work done rather than with the state held: in the million-task churn run the leader's RSS went
/// from 400 MB to over 1 GB while the tasks stored and the data directory stayed flat, and a
/// `malloc_trim(0)` (called by hand) took a follower from 530 to 382 MB at once (BENCHMARKS.md).
/// `malloc_trim` releases the whole free pages of every arena (`madvise`); it holds each arena's
/// lock while it walks it, which at this interval costs nothing measurable. It does not stop all
/// of the growth: with it, RSS still rose by about 0.6 KB per task under churn (BENCHMARKS.md).
public struct MemoryTrimmer: Sendable {
    public let interval: Duration

    public init(interval: Duration = .seconds(30)) {
        self.interval = interval
    }

    /// Runs until the calling task is cancelled.
    public func run() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            Self.trim()
        }
    }

    /// Returns free memory to the system now; whether any was returned (always false where the C
    /// library has no `malloc_trim`).
    @discardableResult
    public static func trim() -> Bool {
        guard let mallocTrim else { return false }
        return mallocTrim(0) == 1
    }

    /// glibc's `int malloc_trim(size_t pad)`, looked up at run time: Swift's Glibc module does not
    /// import `<malloc.h>`.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()
}
