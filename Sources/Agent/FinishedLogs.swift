import Foundation
import Synchronization

/// The output of tasks that ended on this worker, kept as files after their containers are removed,
/// so `GET /api/v1/tasks/{id}/logs` still answers for finished tasks. At most `capacity` files are
/// kept; the oldest go first.
public final class FinishedLogs: Sendable {
    let directory: String
    let capacity: Int
    private let order = Mutex<[String]>([])

    public init(directory: String, capacity: Int = 1000) {
        self.directory = directory
        self.capacity = capacity
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let byAge = existing.compactMap { name -> (String, Date)? in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            return (attributes?[.modificationDate] as? Date).map { (name, $0) }
        }.sorted { $0.1 < $1.1 }.map(\.0)
        order.withLock { $0 = byAge }
    }

    private func path(_ taskID: String) -> String? {
        // Task ids are URL-safe; refuse anything that could leave the directory.
        guard !taskID.isEmpty, !taskID.contains("/"), !taskID.hasPrefix(".") else { return nil }
        return directory + "/" + taskID
    }

    public func store(taskID: String, _ output: [UInt8]) {
        guard let path = path(taskID) else { return }
        FileManager.default.createFile(atPath: path, contents: Data(output))
        let evicted: [String] = order.withLock { order in
            order.removeAll { $0 == taskID }
            order.append(taskID)
            guard order.count > capacity else { return [] }
            let drop = Array(order.prefix(order.count - capacity))
            order.removeFirst(drop.count)
            return drop
        }
        for id in evicted { try? FileManager.default.removeItem(atPath: directory + "/" + id) }
    }

    /// Keeps the frames of a task's output (`FramedLogCodec`), stdout and stderr told apart.
    public func store(taskID: String, frames: [LogFrame]) {
        store(taskID: taskID, FramedLogCodec.encode(frames))
    }

    /// The kept output as frames (a file from before frames were kept reads as stdout).
    public func loadFrames(taskID: String) -> [LogFrame]? {
        guard let path = path(taskID), let data = FileManager.default.contents(atPath: path) else { return nil }
        return FramedLogCodec.decode(Array(data))
    }

    /// The kept output as text, stdout and stderr interleaved.
    public func load(taskID: String) -> [UInt8]? {
        loadFrames(taskID: taskID).map(LogSelection.text)
    }
}
