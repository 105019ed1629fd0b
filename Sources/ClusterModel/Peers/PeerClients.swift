import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

extension HostPort {
    /// The gRPC target: an IP literal as is, anything else resolved by DNS (compose service names).
    var target: any ResolvableTarget {
        if host.split(separator: ".").count == 4, host.split(separator: ".").allSatisfy({ UInt8($0) != nil }) {
            return .ipv4(address: host, port: port)
        }
        if host.contains(":") { return .ipv6(address: host, port: port) }
        return .dns(host: host, port: port)
    }
}

/// Long-lived gRPC clients to other processes of the cluster (masters, workers), one per address,
/// created on first use and kept: a forwarded write or a log fetch then costs one call on an open
/// HTTP/2 connection rather than a connection set-up.
public final class PeerClients: Sendable {
    private struct Entry {
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        let runner: Task<Void, Never>
    }

    private let entries = Mutex<[HostPort: Entry]>([:])
    private let security: HTTP2ClientTransport.Posix.TransportSecurity

    /// - Parameter security: `.plaintext`, or mutual TLS with this process's certificate from the
    ///   cluster's CA (ClusterSecurity's `TLSMaterial`): every peer then verifies who we are.
    public init(security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext) {
        self.security = security
    }

    /// The client for `address`, connecting in the background on first use.
    public func client(for address: HostPort) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        try entries.withLock { entries in
            if let entry = entries[address] { return entry.client }
            let transport = try HTTP2ClientTransport.Posix(
                target: address.target,
                transportSecurity: security,
                config: .defaults { config in
                    config.backoff = .init(initial: .milliseconds(20), max: .milliseconds(500), multiplier: 1.6, jitter: 0.2)
                    config.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
                }
            )
            let client = GRPCClient(transport: transport)
            let runner = Task { _ = try? await client.runConnections() }
            entries[address] = Entry(client: client, runner: runner)
            return client
        }
    }

    /// Closes every connection.
    public func shutdown() {
        let all = entries.withLock { entries in
            defer { entries.removeAll() }
            return Array(entries.values)
        }
        for entry in all {
            entry.client.beginGracefulShutdown()
            entry.runner.cancel()
        }
    }
}
