import Hummingbird
import HummingbirdCore
import Synchronization

/// Caps the REST API's open connections (`APIConfiguration.maxConnections`). Past the cap the
/// listener stops accepting: new clients wait in the kernel's accept queue until a connection
/// closes (Hummingbird's `AvailableConnectionsDelegate`), so a flood of idle sockets costs the
/// master a bounded number of file descriptors and buffers; `/metrics` shows the count and the cap.
public final class ConnectionLimit: Sendable {
    /// The most connections served at once.
    public let limit: Int
    private let open = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
    }

    /// Connections open now; at `limit`, new ones wait.
    public var openConnections: Int { open.load(ordering: .relaxed) }

    /// The delegate for one server: counts through this object.
    var delegate: Delegate { Delegate(limit: self) }

    struct Delegate: AvailableConnectionsDelegate {
        let limit: ConnectionLimit

        mutating func connectionOpened() { limit.open.add(1, ordering: .relaxed) }
        mutating func connectionClosed() { limit.open.subtract(1, ordering: .relaxed) }

        func isAcceptingNewConnections() -> Bool { limit.open.load(ordering: .relaxed) < limit.limit }
    }
}
