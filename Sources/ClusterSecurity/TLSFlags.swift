/// The `--tls-ca`, `--tls-cert` and `--tls-key` flags of `master` and `worker`: all three or none.
public enum TLSFlags {
    /// Why the flags cannot be used, as one line naming them.
    public struct Incomplete: Error, CustomStringConvertible {
        public let description: String
    }

    /// The material the three files hold (checked: readable, PEM, key matching certificate,
    /// certificate issued by the CA and valid now), or nil when none of the flags is given.
    public static func load(ca: String?, certificate: String?, key: String?) throws -> TLSMaterial? {
        let given = [("--tls-ca", ca), ("--tls-cert", certificate), ("--tls-key", key)]
        let missing = given.filter { $0.1 == nil }.map(\.0)
        if missing.count == given.count { return nil }
        guard missing.isEmpty, let ca, let certificate, let key else {
            throw Incomplete(description: "TLS needs --tls-ca, --tls-cert and --tls-key together: \(missing.joined(separator: " and ")) missing "
                + "(create them with `master tls init DIR --master ...`)")
        }
        return try TLSMaterial(caFile: ca, certificateFile: certificate, keyFile: key)
    }
}
