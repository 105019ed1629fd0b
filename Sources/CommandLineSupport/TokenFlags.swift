import Foundation

/// Why a token flag pair (`--join-token` / `--join-token-file`) gives no usable token.
public enum TokenFlagError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Both the token and its file were given (on the command line or as `ORCH_` variables).
    case both(flag: String)
    /// The file cannot be read.
    case unreadable(flag: String, path: String, reason: String)
    /// The file holds nothing but (at most) one newline.
    case empty(flag: String, path: String)

    public var description: String {
        switch self {
        case .both(let flag):
            "--\(flag) and --\(flag)-file are both set (flags or \(EnvironmentFlags.variable(flag)) / \(EnvironmentFlags.variable(flag + "-file"))): keep one"
        case .unreadable(let flag, let path, let reason):
            "--\(flag)-file: cannot read \(path): \(reason)"
        case .empty(let flag, let path):
            "--\(flag)-file: \(path) is empty; write the token into it"
        }
    }
}

/// Tokens come from a file (`--x-token-file`, so they do not show in `ps`) or from the
/// environment (`ORCH_X_TOKEN`); `--x-token` on the command line still works for a trial.
public enum TokenFlags {
    /// The token given by `value` (`--<flag>`) or by the file at `file` (`--<flag>-file`), or nil
    /// when neither is set. The file's content loses one trailing newline (`echo t > file` writes
    /// one) and nothing else: a token is compared byte for byte.
    ///
    /// - Parameter read: reads a whole file (injected by tests).
    public static func resolve(flag: String, value: String?, file: String?,
                               read: (String) throws -> Data = { try Data(contentsOf: URL(fileURLWithPath: $0)) })
        throws(TokenFlagError) -> String? {
        switch (value, file) {
        case (nil, nil):
            return nil
        case (let value?, nil):
            return value
        case (_?, _?):
            throw .both(flag: flag)
        case (nil, let path?):
            let data: Data
            do {
                data = try read(path)
            } catch {
                throw .unreadable(flag: flag, path: path, reason: reason(error))
            }
            var text = String(decoding: data, as: UTF8.self)
            // "\r\n" is one Character in Swift, so this also drops a Windows line ending whole.
            if text.hasSuffix("\n") || text.hasSuffix("\r\n") { text.removeLast() }
            guard !text.isEmpty else { throw .empty(flag: flag, path: path) }
            return text
        }
    }

    /// A short reason: Foundation's errors describe themselves at length.
    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain {
            switch ns.code {
            case NSFileReadNoSuchFileError: return "no such file"
            case NSFileReadNoPermissionError: return "permission denied"
            default: break
            }
        }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        return ns.localizedDescription
    }
}
