import Crypto
import Foundation
import Store

/// A backup of a master's store: what `etcdctl snapshot save FILE` receives from a master's etcd
/// API (and `GET /api/v1/cluster/snapshot` from its REST API), and what `master snapshot restore`
/// founds a new cluster from.
///
/// Layout:
///
///     "ORCHBAK1"                 8 bytes
///     revision                   8 bytes, little endian (the store revision of the image)
///     raft index                 8 bytes (the Raft index the image was taken at)
///     created                    8 bytes (Unix milliseconds, the answering master's clock)
///     cluster id length, id      2 bytes, then that many UTF-8 bytes (the cluster's hex id)
///     image length, image        8 bytes, then `KeyValueStore.snapshotBytes()`
///     zero padding               to a multiple of 512 bytes
///     SHA-256                    32 bytes, of everything before it
///
/// The padding and the trailing hash are etcd's own layout (a bolt database is whole pages, and
/// etcd appends its SHA-256): `etcdctl snapshot save` refuses a stream whose length is not 32
/// more than a multiple of 512, and `etcdutl`'s restore checks the hash the same way ours does.
public struct ClusterBackup: Sendable, Equatable {
    public static let magic: [UInt8] = Array("ORCHBAK1".utf8)
    static let page = 512
    static let hashSize = 32

    /// The store revision the image is at.
    public var revision: Int64
    /// The Raft index the image was taken at (0 when not known).
    public var raftIndex: UInt64
    /// When the backup was taken (Unix ms, the answering master's wall clock).
    public var createdMs: Int64
    /// The id of the cluster it was taken from.
    public var clusterID: String
    /// The store's image (`KeyValueStore.snapshotBytes()`).
    public var image: [UInt8]

    public init(revision: Int64, raftIndex: UInt64, createdMs: Int64, clusterID: String, image: [UInt8]) {
        self.revision = revision
        self.raftIndex = raftIndex
        self.createdMs = createdMs
        self.clusterID = clusterID
        self.image = image
    }

    /// The file's bytes.
    public var encoded: [UInt8] {
        var out = Self.magic
        let id = Array(clusterID.utf8.prefix(Int(UInt16.max)))
        out.reserveCapacity(64 + id.count + image.count + Self.page)
        append(&out, UInt64(bitPattern: revision))
        append(&out, raftIndex)
        append(&out, UInt64(bitPattern: createdMs))
        out.append(UInt8(id.count & 0xff)); out.append(UInt8(id.count >> 8))
        out.append(contentsOf: id)
        append(&out, UInt64(image.count))
        out.append(contentsOf: image)
        let padding = (Self.page - out.count % Self.page) % Self.page
        out.append(contentsOf: repeatElement(0, count: padding))
        out.append(contentsOf: SHA256.hash(data: out))
        return out
    }

    /// Reads a backup file: checks its hash, its layout, and that its image decodes as a store.
    public init(decoding bytes: [UInt8]) throws(ClusterBackupError) {
        guard bytes.count >= Self.magic.count, bytes.starts(with: Self.magic) else {
            throw .notABackup
        }
        guard bytes.count >= Self.page + Self.hashSize, (bytes.count - Self.hashSize) % Self.page == 0 else {
            throw .truncated(bytes.count)
        }
        let body = bytes[..<(bytes.count - Self.hashSize)]
        guard Array(SHA256.hash(data: body)) == Array(bytes[(bytes.count - Self.hashSize)...]) else {
            throw .checksumMismatch
        }
        var at = Self.magic.count
        func u64() throws(ClusterBackupError) -> UInt64 {
            guard body.count - at >= 8 else { throw .malformed("the header is cut short") }
            var value: UInt64 = 0
            for i in 0..<8 { value |= UInt64(body[at + i]) << (8 * UInt64(i)) }
            at += 8
            return value
        }
        revision = Int64(bitPattern: try u64())
        raftIndex = try u64()
        createdMs = Int64(bitPattern: try u64())
        guard body.count - at >= 2 else { throw .malformed("the header is cut short") }
        let idLength = Int(body[at]) | Int(body[at + 1]) << 8
        at += 2
        guard body.count - at >= idLength else { throw .malformed("the cluster id is cut short") }
        clusterID = String(decoding: body[at..<(at + idLength)], as: UTF8.self)
        at += idLength
        let imageLength = try u64()
        guard UInt64(body.count - at) >= imageLength else { throw .malformed("the image is cut short") }
        image = Array(body[at..<(at + Int(imageLength))])
        at += Int(imageLength)
        guard body[at...].allSatisfy({ $0 == 0 }) else { throw .malformed("bytes after the image") }
        let store: KeyValueStore
        do {
            store = try KeyValueStore(snapshot: image)
        } catch {
            throw .malformed("the store image does not decode: \(error)")
        }
        guard store.revision == revision else {
            throw .malformed("the header says revision \(revision), the image is at \(store.revision)")
        }
    }

    /// The hex SHA-256 of the file (its last 32 bytes), to tell backups apart.
    public static func checksum(of bytes: [UInt8]) -> String {
        bytes.suffix(hashSize).map { String(format: "%02x", $0) }.joined()
    }

    private func append(_ out: inout [UInt8], _ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }
}

/// Why a file is not a usable backup; the message says what to do.
public enum ClusterBackupError: Error, Sendable, Equatable, CustomStringConvertible {
    case notABackup
    case truncated(Int)
    case checksumMismatch
    case malformed(String)

    public var description: String {
        switch self {
        case .notABackup:
            "not a backup of this orchestrator (it does not start with ORCHBAK1); take one with `etcdctl snapshot save FILE` against a master's etcd API or `orchctl cluster snapshot save FILE`"
        case .truncated(let size):
            "the backup is cut short or padded wrongly (\(size) bytes); take it again"
        case .checksumMismatch:
            "the backup's SHA-256 does not match its content: the file is damaged; take it again"
        case .malformed(let why):
            "the backup is damaged: \(why)"
        }
    }
}
