import AsyncHTTPClient
import ClusterSecurity
import Foundation
import NIOSSL

/// The TLS material every cluster of this test process uses, made once with the same code as
/// `master tls init`: one CA, masters m1...m5 on 127.0.0.1, one worker, one client identity and
/// one etcd member (`e`, on 127.0.0.1) for the `--store etcd` tests.
/// Harnesses run with TLS by default (the production setting), so the integration suite as a
/// whole shows the cluster works with it.
enum TestTLS {
    static let masterCount = 5

    static let directory: TLSDirectory = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("orch-it-tls-\(getpid())").path
        var requests = try! (1...masterCount).map { CertificateRequest(identity: try ClusterIdentity(role: .master, name: "m\($0)"), hosts: ["127.0.0.1"]) }
        requests.append(CertificateRequest(identity: try! ClusterIdentity(role: .worker, name: "worker")))
        requests.append(CertificateRequest(identity: try! ClusterIdentity(role: .client, name: "tests")))
        requests.append(CertificateRequest(identity: etcdIdentity, hosts: ["127.0.0.1"]))
        var tool = TLSInit(directory: path, requests: requests)
        tool.force = true
        _ = try! tool.run()
        return TLSDirectory(path: path)
    }()

    static func flags(_ identity: ClusterIdentity) -> [String] {
        ["--tls-ca", directory.caCertificate, "--tls-cert", directory.certificate(identity), "--tls-key", directory.key(identity)]
    }

    static func masterFlags(_ index: Int) -> [String] { flags(try! ClusterIdentity(role: .master, name: "m\(index + 1)")) }
    static var workerFlags: [String] { flags(try! ClusterIdentity(role: .worker, name: "worker")) }
    static var clientIdentity: ClusterIdentity { try! ClusterIdentity(role: .client, name: "tests") }
    static var etcdIdentity: ClusterIdentity { try! ClusterIdentity(role: .etcd, name: "e") }

    /// etcd's flags for TLS to its clients and peers, a client certificate from the CA required,
    /// as `master tls init --etcd` prints them.
    static var etcdFlags: [String] { directory.flags(etcdIdentity).split(separator: " ").map(String.init) }

    /// The client's material (for etcdctl's --cacert/--cert/--key, or a gRPC client).
    static var clientMaterial: TLSMaterial {
        try! TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(clientIdentity),
                         keyFile: directory.key(clientIdentity))
    }

    /// Lets `user` (the processes of a non-root cluster) read the material: the directory and the
    /// keys are the test process's, mode 0700/0600, as `tls init` writes them.
    static func share(with user: TestUser) throws {
        try user.own(directory.path)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        for file in files { try user.own(directory.path + "/" + file) }
    }

    /// An HTTPS client that trusts only the cluster CA and presents the test client's
    /// certificate; like `HTTPClient.shared`, never shut down.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = clientMaterial.clientConfiguration()
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
