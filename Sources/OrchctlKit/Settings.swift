import Foundation

/// Where orchctl connects and with what credentials, from (strongest first) its flags, the
/// environment (`ORCH_MASTERS`, `ORCH_API_TOKEN`, `ORCH_API_TOKEN_FILE`, `ORCH_CACERT`, `ORCH_CERT`,
/// `ORCH_KEY`), the config file, then the default `http://127.0.0.1:8080`.
public struct ConnectionSettings: Sendable, Hashable {
    /// Base URLs, tried in order (`http://host:port` or `https://...`, no trailing slash).
    public var masters: [String]
    public var token: String?
    public var caCertificate: String?
    public var certificate: String?
    public var key: String?

    public static let defaultMaster = "http://127.0.0.1:8080"

    public init(masters: [String] = [ConnectionSettings.defaultMaster], token: String? = nil,
                caCertificate: String? = nil, certificate: String? = nil, key: String? = nil) {
        self.masters = masters
        self.token = token
        self.caCertificate = caCertificate
        self.certificate = certificate
        self.key = key
    }

    /// The settings' sources, each a map of the config file's key names (`masters`, `token`,
    /// `token-file`, `cacert`, `cert`, `key`) to values; the first source that sets a key wins.
    /// A token file is read here (trimmed); `token` wins over `token-file` of the same source.
    public static func resolve(flags: [String: String], environment: [String: String], config: [String: String],
                               readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) })
        throws(OrchctlError) -> ConnectionSettings {
        let env: [String: String] = [
            "masters": environment["ORCH_MASTERS"], "token": environment["ORCH_API_TOKEN"],
            "token-file": environment["ORCH_API_TOKEN_FILE"], "cacert": environment["ORCH_CACERT"],
            "cert": environment["ORCH_CERT"], "key": environment["ORCH_KEY"],
        ].compactMapValues { $0?.isEmpty == false ? $0 : nil }
        let sources = [flags, env, config]
        func pick(_ key: String) -> String? { sources.lazy.compactMap { $0[key] }.first }

        var settings = ConnectionSettings()
        settings.caCertificate = pick("cacert")
        if let list = pick("masters") {
            settings.masters = try parseMasters(list, defaultScheme: settings.caCertificate == nil ? "http" : "https")
        }
        // The token and its file are one setting: the strongest source that names either decides.
        for source in sources {
            if let token = source["token"] {
                settings.token = token
                break
            }
            if let file = source["token-file"] {
                let text: String
                do { text = try readFile(file) } catch { throw .usage("cannot read the token file \(file): \(Self.reason(error))") }
                settings.token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
        }
        settings.certificate = pick("cert")
        settings.key = pick("key")
        if (settings.certificate == nil) != (settings.key == nil) {
            throw .usage("--cert and --key go together (a client certificate and its private key)")
        }
        return settings
    }

    /// `URL[,URL...]`: each `http(s)://host:port` or a bare `host:port` (then `defaultScheme`:
    /// `https` when a CA is given).
    public static func parseMasters(_ text: String, defaultScheme: String = "http") throws(OrchctlError) -> [String] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !items.isEmpty else { throw .usage("--master: give at least one URL, e.g. http://127.0.0.1:8080") }
        return try items.map { (item) throws(OrchctlError) -> String in
            var url = item.contains("://") ? item : defaultScheme + "://" + item
            while url.hasSuffix("/") { url.removeLast() }
            guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
                  parsed.host?.isEmpty == false, parsed.path.isEmpty || parsed.path == "/" else {
                throw .usage("--master: \"\(item)\" is not a master URL such as https://10.0.0.1:8080")
            }
            return url
        }
    }

    static func reason(_ error: any Error) -> String {
        (error as NSError).localizedDescription
    }
}

/// `~/.config/orchctl/config` (or `$XDG_CONFIG_HOME/orchctl/config`, or the file `ORCHCTL_CONFIG`
/// names): one `key = value` a line, `#` comments, keys `masters`, `token`, `token-file`, `cacert`,
/// `cert`, `key`, as kubectl's kubeconfig holds a cluster's address and credentials.
public enum ConfigFile {
    public static let keys: Set<String> = ["masters", "token", "token-file", "cacert", "cert", "key"]

    /// The file's path for this environment.
    public static func path(environment: [String: String]) -> String? {
        if let explicit = environment["ORCHCTL_CONFIG"], !explicit.isEmpty { return explicit }
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/orchctl/config" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.config/orchctl/config" }
        return nil
    }

    /// Reads the file: an empty map when it does not exist (the file is optional).
    public static func load(environment: [String: String]) throws(OrchctlError) -> [String: String] {
        guard let path = path(environment: environment), FileManager.default.fileExists(atPath: path) else { return [:] }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .usage("cannot read \(path): \(ConnectionSettings.reason(error))")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String = "config") throws(OrchctlError) -> [String: String] {
        var values: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else { throw .usage("\(path):\(n + 1): expected key = value") }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q { value = String(value.dropFirst().dropLast()) }
            guard keys.contains(key) else {
                throw .usage("\(path):\(n + 1): unknown key \"\(key)\" (known: \(keys.sorted().joined(separator: ", ")))")
            }
            values[key] = value
        }
        return values
    }
}
