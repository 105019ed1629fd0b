#if canImport(Glibc)
import Glibc
#endif

/// 127.0.0.1 at a port, as the `sockaddr` that `bind` and `connect` take: for the tests and benches
/// that open sockets by hand (a port held by "another program", idle clients, a probe on a thread).
public enum LoopbackAddress {
    /// Calls `body` with the address of 127.0.0.1 at `port` and its length.
    public static func with<T>(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
