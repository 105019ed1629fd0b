import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Loopback ports for a test's processes, chosen so that nothing else is likely to take them.
///
/// Why not any random high port: the kernel hands out ephemeral ports (32768-60999 on Linux) to
/// every outgoing connection, so a port picked in that range can be taken by a client socket of
/// the very cluster under test between the pick and the bind. (A master whose etcd port was taken
/// that way failed to start in CI.) Ports here come from below the ephemeral range and are checked
/// free, each one, at the moment of the choice.
public enum PortBlock {
    /// A base port such that `base + offset` is free on 127.0.0.1 for every offset given.
    ///
    /// - Throws: when no free block turned up after a bounded number of tries.
    public static func reserve(offsets: [Int]) throws -> Int {
        let span = (offsets.max() ?? 0) + 1
        let (low, high) = (10_000, ephemeralStart() - 1)
        for _ in 0..<200 {
            let base = Int.random(in: low...(high - span))
            if offsets.allSatisfy({ isFree(base + $0) }) { return base }
        }
        throw Failure("no free block of \(span) ports between \(low) and \(high)")
    }

    /// The first port of the kernel's ephemeral range (32768 when it cannot be read).
    static func ephemeralStart() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
              let value = Int(first), value > 11_000 else { return 32_768 }
        return value
    }

    /// Whether a listening socket could bind `port` on 127.0.0.1 right now.
    public static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        // As the servers bind (SO_REUSEADDR): a port in TIME_WAIT is usable, one in use is not.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        return LoopbackAddress.with(port: port) { bind(fd, $0, $1) } == 0
    }

    /// Why no block was found.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
