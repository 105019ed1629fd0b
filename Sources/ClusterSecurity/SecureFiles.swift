#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file of the TLS material could not be written.
public struct SecureFileError: Error, Equatable, CustomStringConvertible {
    /// The file or directory.
    public let path: String
    /// What went wrong (the system's message).
    public let reason: String

    /// `<path>: <reason>`.
    public var description: String { "\(path): \(reason)" }
}

/// Writes the TLS material with the permissions it needs: keys 0600 and their directories 0700,
/// set when the file is created rather than afterwards, so a key is never readable by others even
/// for an instant.
public enum SecureFiles {
    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// Creates `path` (and its missing parents) with mode 0700. A directory that already exists
    /// is left as it is: the operator chose its permissions.
    public static func makeDirectory(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw SecureFileError(path: path, reason: "exists and is not a directory") }
            return
        }
        let parent = parentDirectory(of: path)
        if parent != path, !parent.isEmpty, !exists(parent) { try makeDirectory(parent) }
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw SecureFileError(path: path, reason: systemError()) }
        // mkdir's mode is reduced by the umask; 0700 is what we want whatever the umask.
        guard chmod(path, 0o700) == 0 else { throw SecureFileError(path: path, reason: systemError()) }
    }

    /// Writes `contents` to `path` with exactly `mode` (0600 for keys, 0644 for certificates),
    /// replacing an existing file. The data goes to a temporary file created with `mode` in the
    /// same directory, which is then renamed over `path`, so readers never see half a file.
    public static func writeFile(_ contents: String, to path: String, mode: mode_t, durable: Bool = false) throws {
        try writeFile(Array(contents.utf8), to: path, mode: mode, durable: durable)
    }

    /// The same for bytes. With `durable`, the directory is synced after the rename too, so once
    /// this returns a crash can lose neither the contents nor the name (the file is fsynced before
    /// the rename in any case).
    public static func writeFile(_ bytes: [UInt8], to path: String, mode: mode_t, durable: Bool = false) throws {
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw SecureFileError(path: path, reason: systemError()) }
        var failure: String?
        // The umask may have removed bits from `mode` (never added any): set it exactly.
        if fchmod(descriptor, mode) != 0 { failure = systemError() }
        var written = 0
        while failure == nil, written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                failure = systemError()
            } else {
                written += result
            }
        }
        if failure == nil, fsync(descriptor) != 0 { failure = systemError() }
        close(descriptor)
        if failure == nil, rename(temporary, path) != 0 { failure = systemError() }
        if let failure {
            unlink(temporary)
            throw SecureFileError(path: path, reason: failure)
        }
        if durable { try syncDirectory(of: path) }
    }

    /// fsyncs the directory holding `path`, so a rename or creation in it survives a crash.
    public static func syncDirectory(of path: String) throws {
        let directory = parentDirectory(of: path)
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SecureFileError(path: directory, reason: systemError()) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw SecureFileError(path: directory, reason: systemError()) }
    }

    /// The permission bits of `path` (e.g. 0o600), or nil if it cannot be examined.
    public static func permissions(of path: String) -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    /// The whole file as text, or why not (`ENOENT` etc. as `errno`).
    static func readFile(_ path: String) -> Result<String, ReadFailure> {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return .failure(ReadFailure(errno: errno)) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(errno: errno))
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            // Certificates and keys are a few kilobytes; a huge file is a mistake, not material.
            if bytes.count > 1 << 20 { return .failure(ReadFailure(errno: EFBIG)) }
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    /// A failed read's `errno`.
    struct ReadFailure: Error {
        let errno: Int32
        var message: String { String(cString: strerror(errno)) }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func systemError() -> String { String(cString: strerror(errno)) }
}
