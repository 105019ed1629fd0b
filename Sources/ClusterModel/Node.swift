import Foundation

/// A worker's health as the masters see it.
public enum NodeState: String, Sendable, Hashable, Codable, CaseIterable {
    case ready
    case notReady = "not_ready"
    case draining
    case down
}

extension NodeInfo {
    /// A new node id: the host name made DNS-label safe (lower-case letters, digits, `-`; at most
    /// 40 characters) and a random hexadecimal suffix. The one generator of node ids: workers pick
    /// their own before joining (so their containers carry it), masters only for a worker that
    /// joins without one.
    public static func newID(hostname: String) -> String {
        let base = String(hostname.lowercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "-" }.prefix(40))
            .trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return (base.isEmpty ? "node" : base) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    /// Ids a master accepts: 1 to 63 of lower-case letters, digits and `-` (a DNS label).
    public static func isValidID(_ id: String) -> Bool {
        (1...63).contains(id.utf8.count) && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }
}

/// What the scheduler needs to know about a worker node.
public struct NodeInfo: Sendable, Hashable, Codable {
    public var id: String
    public var state: NodeState
    /// False once cordoned: running tasks stay, no new ones arrive.
    public var schedulable: Bool
    public var labels: [String: String]
    public var capacity: Resources
    /// The sum of the requests of the tasks placed on it.
    public var allocated: Resources
    public var taskCount: Int

    public init(id: String, state: NodeState = .ready, schedulable: Bool = true, labels: [String: String] = [:],
                capacity: Resources, allocated: Resources = .zero, taskCount: Int = 0) {
        self.id = id
        self.state = state
        self.schedulable = schedulable
        self.labels = labels
        self.capacity = capacity
        self.allocated = allocated
        self.taskCount = taskCount
    }

    /// What is still free.
    public var free: Resources { capacity - allocated }
}
