// PROVISIONAL: replaced by the runtime module's own definition when it lands.
import Orchestrator

public struct RuntimeTask: Sendable, Hashable {
    public var taskID: String
    public var epoch: UInt64
    public var name: String
    public var image: String
    public var command: [String]
    public var env: [String: String]
    public var cpuMillicores: Int
    public var memoryMB: Int
    public init(taskID: String, epoch: UInt64, name: String, image: String, command: [String], env: [String: String], cpuMillicores: Int, memoryMB: Int) {
        self.taskID = taskID; self.epoch = epoch; self.name = name; self.image = image; self.command = command; self.env = env; self.cpuMillicores = cpuMillicores; self.memoryMB = memoryMB
    }
}
public enum FailureReason: String, Sendable, Hashable { case imageNotFound, invalidSpec, runtimeError }
public enum TaskOutcome: Sendable, Hashable {
    case exited(code: Int32), oomKilled(code: Int32), cancelled, failed(reason: FailureReason, message: String)
}
public struct RuntimeTaskInfo: Sendable, Hashable {
    public var taskID: String
    public var epoch: UInt64
    public var running: Bool
    public var outcome: TaskOutcome?
}
public protocol TaskRuntime: Sendable {
    func start(_ task: RuntimeTask) async throws
    func wait(taskID: String) async throws -> TaskOutcome
    func stop(taskID: String, grace: Duration) async throws
    func logs(taskID: String, limit: Int) async throws -> [UInt8]
    func list() async throws -> [RuntimeTaskInfo]
    func remove(taskID: String) async throws
}
