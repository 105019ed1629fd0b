import ClusterSecurity
import Foundation

/// A fresh directory under the system's temporary directory, removed when `body` returns.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async rethrows -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-security-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// A TLS directory made by `TLSInit` with master m1 (at 10.0.0.1 and m1.example, plus loopback),
/// worker w1 and client ops.
func makeCluster(in directory: String) throws -> TLSDirectory {
    _ = try TLSInit(directory: directory, requests: [
        CertificateRequest(role: .master, spec: "m1=10.0.0.1,m1.example"),
        CertificateRequest(role: .worker, spec: "w1"),
        CertificateRequest(role: .client, spec: "ops"),
    ]).run()
    return TLSDirectory(path: directory)
}

/// The material of `identity` in `directory`.
func material(_ directory: TLSDirectory, _ role: ClusterRole, _ name: String) throws -> TLSMaterial {
    let identity = try ClusterIdentity(role: role, name: name)
    return try TLSMaterial(caFile: directory.caCertificate, certificateFile: directory.certificate(identity), keyFile: directory.key(identity))
}

/// Runs `executable` with `arguments`; its exit status and standard output and error together.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Where openssl is, if it is installed.
let opensslPath: String? = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
