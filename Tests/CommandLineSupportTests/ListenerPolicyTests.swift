import CommandLineSupport
import Testing

@Suite struct ListenerPolicyTests {
    @Test("loopback hosts", arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("localhost", true), ("LOCALHOST", true), ("::1", true), ("[::1]", true),
        ("0.0.0.0", false), ("::", false), ("[::]", false), ("192.168.1.5", false), ("10.0.0.1", false),
        ("master1", false), ("127.0.0.1.example.com", false), ("127.example", false), ("", false),
    ])
    func loopback(host: String, expected: Bool) {
        #expect(ListenerPolicy.isLoopback(host) == expected)
    }

    @Test("a listener defaults to every interface exactly when it may face the network", arguments: [
        (ListenerPolicy.Guard.apiToken, false, false, "127.0.0.1"),
        (.apiToken, true, false, "127.0.0.1"),   // a token in clear text is not enough
        (.apiToken, false, true, "127.0.0.1"),   // HTTPS without the token: anyone could call
        (.apiToken, true, true, "0.0.0.0"),
        (.joinToken, true, false, "127.0.0.1"),
        (.joinToken, false, true, "0.0.0.0"),    // certificates admit workers
        (.tlsOnly, false, false, "127.0.0.1"),
        (.tlsOnly, false, true, "0.0.0.0"),
    ])
    func defaults(guarded: ListenerPolicy.Guard, token: Bool, tls: Bool, expected: String) {
        #expect(ListenerPolicy.defaultHost(guarded, tokenSet: token, tlsEnabled: tls) == expected)
    }

    static func api(_ host: String, token: Bool) -> ListenerPolicy.Listener {
        .init(flag: "api-addr", host: host, port: 8080, guarded: .apiToken, tokenSet: token)
    }
    static func rpc(_ host: String, token: Bool) -> ListenerPolicy.Listener {
        .init(flag: "rpc-addr", host: host, port: 9090, guarded: .joinToken, tokenSet: token)
    }
    static func etcd(_ host: String) -> ListenerPolicy.Listener {
        .init(flag: "etcd-addr", host: host, port: 2379, guarded: .tlsOnly, tokenSet: false)
    }

    /// (listeners, TLS, --insecure) -> refused?, and how many warnings when started.
    @Test("a public bind needs TLS and its token, or --insecure", arguments: [
        ([api("127.0.0.1", token: false), rpc("127.0.0.1", token: false), etcd("127.0.0.1")], false, false, false, 0),
        ([api("0.0.0.0", token: false)], false, false, true, 0),
        ([api("0.0.0.0", token: true)], false, false, true, 0),          // a token in clear text is not enough
        ([api("0.0.0.0", token: true)], true, false, false, 0),
        ([api("0.0.0.0", token: false)], true, false, true, 0),          // TLS without the token
        ([rpc("10.0.0.1", token: true)], true, false, false, 0),
        ([rpc("10.0.0.1", token: false)], true, false, false, 0),        // with TLS, certificates admit workers
        ([etcd("::")], true, false, false, 0),
        ([etcd("::")], false, false, true, 0),
        ([api("0.0.0.0", token: false), rpc("0.0.0.0", token: false), etcd("127.0.0.1")], false, true, false, 2),
        ([api("localhost", token: false), rpc("0.0.0.0", token: true)], false, true, false, 1),
    ] as [([ListenerPolicy.Listener], Bool, Bool, Bool, Int)])
    func decide(listeners: [ListenerPolicy.Listener], tls: Bool, insecure: Bool, refused: Bool, warnings: Int) {
        let decision = ListenerPolicy.decide(listeners, tlsEnabled: tls, insecure: insecure)
        switch decision {
        case .refuse(let message):
            #expect(refused, "\(message)")
            #expect(!message.contains("\n"))
            #expect(message.contains("--insecure"))
        case .start(let list):
            #expect(!refused)
            #expect(list.count == warnings, "\(list)")
        }
    }

    @Test("the refusal names each listener and what it lacks")
    func message() {
        let decision = ListenerPolicy.decide([Self.api("0.0.0.0", token: false), Self.rpc("0.0.0.0", token: true), Self.etcd("::")],
                                             tlsEnabled: false, insecure: false)
        guard case .refuse(let message) = decision else {
            Issue.record("\(decision)")
            return
        }
        let tls = "TLS (--tls-ca, --tls-cert, --tls-key)"
        #expect(message.contains("--api-addr 0.0.0.0:8080 lacks \(tls) and --api-token-file"))
        #expect(message.contains("--rpc-addr 0.0.0.0:9090 lacks \(tls);"))
        #expect(message.contains("--etcd-addr [::]:2379 lacks \(tls)"))
        #expect(message.contains("bind 127.0.0.1"))
    }
}
