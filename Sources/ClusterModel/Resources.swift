/// CPU and memory, as a task requests them and as a node offers them.
public struct Resources: Sendable, Hashable, Codable {
    /// Thousandths of a CPU core (1000 = one core).
    public var cpu: Int
    /// Megabytes of memory.
    public var memory: Int

    public init(cpu: Int, memory: Int) {
        self.cpu = cpu
        self.memory = memory
    }

    /// What a task gets when it asks for nothing (issue 4: cpu 1000, memory 512).
    public static let taskDefault = Resources(cpu: 1000, memory: 512)
    public static let zero = Resources(cpu: 0, memory: 0)

    public static func + (a: Resources, b: Resources) -> Resources {
        Resources(cpu: a.cpu + b.cpu, memory: a.memory + b.memory)
    }

    public static func - (a: Resources, b: Resources) -> Resources {
        Resources(cpu: a.cpu - b.cpu, memory: a.memory - b.memory)
    }

    /// Whether `self` fits within `limit` in both dimensions.
    public func fits(in limit: Resources) -> Bool {
        cpu <= limit.cpu && memory <= limit.memory
    }
}
