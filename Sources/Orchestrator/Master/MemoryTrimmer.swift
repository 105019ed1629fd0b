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
/// of the growth: with it alone, RSS still rose by about 0.6 KB per task under churn, which
/// `configureAllocator` addresses (BENCHMARKS.md).
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

    /// Sets glibc's malloc up for a long-running server; call it first thing in `main`. Each
    /// setting the operator made through the environment (`MALLOC_MMAP_THRESHOLD_`,
    /// `MALLOC_ARENA_MAX`, `GLIBC_TUNABLES`) is left alone. Returns the settings it made.
    ///
    /// - Blocks of 1 MiB and more are mapped on their own and unmapped when freed. glibc's
    ///   threshold starts at 128 KiB but rises to the size of every mapped block freed, up to
    ///   32 MiB: after the first snapshot image (megabytes) was freed, every later image, every
    ///   store dictionary copied on write beside a snapshot and every large Raft batch came out of
    ///   the arenas, and the holes they left between live blocks stayed resident.
    /// - At most 4 arenas instead of 8 per core: fewer heaps for the same churn to fragment.
    ///
    /// Under the churn benchmark (300,000 tasks, the trimmer on in both runs) the leader ended at
    /// 399 MB instead of 672 MB (BENCHMARKS.md).
    @discardableResult
    public static func configureAllocator(environment: [String: String]) -> [String] {
        guard let mallopt else { return [] }
        var made: [String] = []
        let tunables = environment["GLIBC_TUNABLES"] ?? ""
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil && !tunables.contains("mmap_threshold") && mallopt(mmapThreshold, 1 << 20) == 1 {
            made.append("mmap_threshold=1048576")
        }
        if environment["MALLOC_ARENA_MAX"] == nil && !tunables.contains("arena_max") && mallopt(arenaMax, 4) == 1 {
            made.append("arena_max=4")
        }
        return made
    }

    /// `M_MMAP_THRESHOLD` and `M_ARENA_MAX` of `<malloc.h>`.
    private static let mmapThreshold: Int32 = -3, arenaMax: Int32 = -8

    /// glibc's `int mallopt(int param, int value)`, looked up at run time like `malloc_trim`.
    private static let mallopt: (@convention(c) (Int32, Int32) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        #else
        return nil
        #endif
    }()

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
