/// Keeps the last `capacity` bytes of everything appended: memory stays bounded however much
/// output streams through.
struct TailBuffer: Sendable {
    let capacity: Int
    private var storage: [UInt8] = []
    /// Bytes appended in all, including those dropped.
    private(set) var totalCount = 0

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    mutating func append<C: Collection>(contentsOf bytes: C) where C.Element == UInt8 {
        totalCount += bytes.count
        guard capacity > 0 else { return }
        if bytes.count >= capacity {
            storage = Array(bytes.suffix(capacity))
            return
        }
        storage.append(contentsOf: bytes)
        // Trimming only past twice the capacity keeps appends amortised O(1).
        if storage.count > 2 * capacity { storage.removeFirst(storage.count - capacity) }
    }

    /// The last `capacity` bytes (fewer when less was appended).
    var bytes: [UInt8] { Array(storage.suffix(capacity)) }
}

/// Splits Docker's multiplexed log stream (a container without a TTY) into its payload: frames of
/// an 8-byte header `[stream, 0, 0, 0, size (UInt32, big endian)]` followed by `size` bytes.
/// Chunk boundaries are arbitrary, so the parser keeps its place between `feed` calls.
struct DockerLogDemuxer: Sendable {
    private var header: [UInt8] = []
    private var remaining = 0
    private var stream: UInt8 = 1
    private var frame: [UInt8] = []
    /// Frames whose header has been read: one per log line with the json-file driver.
    private(set) var frames = 0

    /// Feeds a chunk; `payload` receives the payload of each frame it completes, in order.
    mutating func feed<C: Collection>(_ chunk: C, payload: ([UInt8]) -> Void) where C.Element == UInt8 {
        feedFrames(chunk) { _, bytes in payload(bytes) }
    }

    /// Feeds a chunk; `frame` receives each whole frame it completes: its stream (1 stdout,
    /// 2 stderr) and payload. Frames cut across chunks are put back together.
    mutating func feedFrames<C: Collection>(_ chunk: C, frame deliver: (UInt8, [UInt8]) -> Void) where C.Element == UInt8 {
        var rest = chunk[...]
        while !rest.isEmpty {
            if remaining > 0 {
                let take = rest.prefix(remaining)
                frame.append(contentsOf: take)
                remaining -= take.count
                rest = rest.dropFirst(take.count)
                if remaining == 0 {
                    deliver(stream, frame)
                    frame.removeAll(keepingCapacity: true)
                }
                continue
            }
            let need = 8 - header.count
            header.append(contentsOf: rest.prefix(need))
            rest = rest.dropFirst(need)
            if header.count == 8 {
                remaining = Int(header[4]) << 24 | Int(header[5]) << 16 | Int(header[6]) << 8 | Int(header[7])
                stream = header[0]
                header.removeAll(keepingCapacity: true)
                frames += 1
                if remaining == 0 { deliver(stream, []) }
            }
        }
    }
}
