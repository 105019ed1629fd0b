/// Little-endian encoding of a `UInt64`, for the test state machines' snapshots.
func bytes(_ v: UInt64) -> [UInt8] {
    withUnsafeBytes(of: v.littleEndian) { Array($0) }
}

/// Reads back what `bytes(_:)` and raw byte runs wrote.
struct ByteReader {
    let data: [UInt8]
    var offset = 0

    init(_ data: [UInt8]) { self.data = data }

    var atEnd: Bool { offset >= data.count }

    mutating func u64() -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(data[offset + k]) << (8 * UInt64(k)) }
        offset += 8
        return v
    }

    mutating func take(_ n: Int) -> [UInt8] {
        defer { offset += n }
        return Array(data[offset..<offset + n])
    }
}
