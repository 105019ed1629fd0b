import RaftTestSupport

/// Free TCP ports on 127.0.0.1, for servers whose port must be known before they start (peers
/// list each other's addresses up front).
public enum FreePort {
    /// A port free right now, below the kernel's ephemeral range (see `PortBlock`): no outgoing
    /// connection can be handed it before the caller binds.
    public static func find() throws -> Int {
        try PortBlock.reserve(offsets: [0])
    }
}
