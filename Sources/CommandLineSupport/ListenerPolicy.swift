/// Which listeners may be exposed beyond this machine, decided before anything binds.
///
/// A listener that answers without TLS, or without the token its protocol checks, is safe only on
/// the loopback interface: on any other address anyone who can route to it controls the cluster
/// (the security review's "open by default"). So defaults are loopback, and a public bind without
/// its protections refuses to start unless the operator says `--insecure`, which then warns once
/// per exposed listener.
public enum ListenerPolicy {
    /// What, besides TLS, a listener needs before it may face the network.
    public enum Guard: Sendable, Equatable {
        /// The REST API: `--api-token`.
        case apiToken
        /// Raft and the worker protocol: `--join-token`.
        case joinToken
        /// No token applies (the etcd API, a worker's log service): TLS alone.
        case tlsOnly
    }

    /// One listen address of a process.
    public struct Listener: Sendable, Equatable {
        /// The flag that sets it, without dashes (`rpc-addr`).
        public var flag: String
        /// The host part as given (`0.0.0.0`, `127.0.0.1`, `[::1]`, a name).
        public var host: String
        public var port: Int
        public var guarded: Guard
        /// Whether the token `guarded` names is set (ignored for `.tlsOnly`).
        public var tokenSet: Bool

        public init(flag: String, host: String, port: Int, guarded: Guard, tokenSet: Bool) {
            self.flag = flag
            self.host = host
            self.port = port
            self.guarded = guarded
            self.tokenSet = tokenSet
        }

        /// `--rpc-addr 0.0.0.0:9090`.
        var named: String {
            let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            return "--\(flag) \(h):\(port)"
        }
    }

    /// What the process does with its listeners.
    public enum Decision: Sendable, Equatable {
        /// Start; log each warning (one per listener exposed under `--insecure`).
        case start(warnings: [String])
        /// Do not start: one line naming the flags to set.
        case refuse(String)
    }

    /// The host a listen flag defaults to: every interface when the listener has what it needs
    /// to face the network (TLS, and its token where one applies), loopback otherwise. A token
    /// alone travels in clear text, so it does not make a public default safe.
    public static func defaultHost(_ guarded: Guard, tokenSet: Bool, tlsEnabled: Bool) -> String {
        let probe = Listener(flag: "", host: "0.0.0.0", port: 0, guarded: guarded, tokenSet: tokenSet)
        return missing(probe, tlsEnabled: tlsEnabled).isEmpty ? "0.0.0.0" : "127.0.0.1"
    }

    /// Whether `host` only accepts connections from this machine: `127.0.0.0/8`, `::1`,
    /// `localhost`. Wildcards (`0.0.0.0`, `::`), names and other addresses are not.
    public static func isLoopback(_ host: String) -> Bool {
        let h = (host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host).lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// What is missing for `listener` to face the network, as flags to set (empty: nothing).
    ///
    /// With TLS the internal port needs no join token: every caller there presents a certificate
    /// from the cluster CA (a worker's admits it as the token would). The REST API still needs
    /// its token, since HTTPS authenticates the server, not its callers.
    public static func missing(_ listener: Listener, tlsEnabled: Bool) -> [String] {
        var missing: [String] = []
        if !tlsEnabled { missing.append("TLS (--tls-ca, --tls-cert, --tls-key)") }
        switch listener.guarded {
        case .apiToken where !listener.tokenSet: missing.append("--api-token-file (or ORCH_API_TOKEN)")
        case .joinToken where !listener.tokenSet && !tlsEnabled: missing.append("--join-token-file (or ORCH_JOIN_TOKEN)")
        default: break
        }
        return missing
    }

    /// Decides for all of a process's listeners at once, so one message names every problem.
    public static func decide(_ listeners: [Listener], tlsEnabled: Bool, insecure: Bool) -> Decision {
        var problems: [(Listener, [String])] = []
        for listener in listeners where !isLoopback(listener.host) {
            let missing = missing(listener, tlsEnabled: tlsEnabled)
            if !missing.isEmpty { problems.append((listener, missing)) }
        }
        if problems.isEmpty { return .start(warnings: []) }
        if insecure {
            return .start(warnings: problems.map { listener, missing in
                "\(listener.named) is exposed without \(missing.joined(separator: " and ")) (--insecure): anyone who reaches it controls what it serves"
            })
        }
        let parts = problems.map { listener, missing in "\(listener.named) lacks \(missing.joined(separator: " and "))" }
        return .refuse("refusing to listen beyond loopback: \(parts.joined(separator: "; ")); "
            + "bind 127.0.0.1, set what is missing, or pass --insecure (ORCH_INSECURE=1) to expose it anyway")
    }
}
