import ArgumentParser
import Foundation

/// `orchctl cluster snapshot save FILE`: a backup of the whole store (`/api/v1/cluster/snapshot`).
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Back up the cluster's store to a file.",
        discussion: """
        The file is the one `etcdctl snapshot save` writes from a master's etcd API: every write \
        acknowledged before the request is in it. Restore it into a new cluster with \
        `master snapshot restore FILE --id NAME --peers ... --data-dir DIR` on each master, then \
        start them (README: Back up and restore).
        """,
        subcommands: [SnapshotSave.self]
    )
}

/// `orchctl cluster snapshot save FILE`
struct SnapshotSave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Save a backup of the store to FILE (written to FILE.part, then renamed).",
        discussion: "Example: orchctl cluster snapshot save backup-$(date +%F).db")
    @Argument(help: "Where to write the backup.") var file: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await withClient(options) { client in
            // A backup is as large as the store: no 64 MiB cap on this answer.
            let reply = try await client.send(.GET, "/api/v1/cluster/snapshot", limit: Int(Int32.max))
            try reply.checked()
            let partial = file + ".part"
            guard FileManager.default.createFile(atPath: partial, contents: reply.body, attributes: [.posixPermissions: 0o600]) else {
                throw OrchctlError.usage("cannot write \(partial): check that its directory exists and is writable")
            }
            guard rename(partial, file) == 0 else {
                throw OrchctlError.usage("cannot rename \(partial) to \(file): \(String(cString: strerror(errno)))")
            }
            let saved = JSONValue.object(["path": .string(file), "bytes": .int(Int64(reply.body.count)), "master": .string(reply.master)])
            options.emit(saved) { "Snapshot saved at \(file) (\(reply.body.count) bytes, from \(reply.master))." }
        }
    }
}
