/// The call and return events of one partition in time order, as a doubly linked list over array
/// indices (Wing & Gong's list; porcupine's `node`s, without pointers).
///
/// The search "lifts" an operation out of the list when it linearizes it (its call and its return
/// both disappear) and puts it back when it backtracks. Lifted nodes keep their own links, so
/// putting operations back in the reverse order of lifting restores the list exactly (Knuth's
/// dancing links): no copying while the search goes back and forth.
struct EventList {
    /// The link past the last node, and before the head.
    static let end = -1
    /// A sentinel that is never lifted: the list is empty when nothing follows it.
    static let head = 0

    private var next: [Int]
    private var prev: [Int]
    /// The operation (index into the partition's operations) of each node; unused for the head.
    private let operationOfNode: [Int]
    /// For a call node, the node of its return; `end` for return nodes and the head.
    private let returnOfCall: [Int]

    /// Builds the list of `calls.count` operations, given each one's call time and return time
    /// (nil: it never returned, so its return sorts after every real event).
    init(calls: [Int64], returns: [Int64?]) {
        precondition(calls.count == returns.count)
        // Ties keep a call before a return: operations that touch at an instant stay concurrent.
        // The operation index breaks the remaining ties, so the order (and every report built from
        // the search) is a function of the history alone.
        struct Event {
            var neverReturns: Bool
            var time: Int64
            var isReturn: Bool
            var operation: Int

            var order: (Int, Int64, Int, Int) {
                (neverReturns ? 1 : 0, time, isReturn ? 1 : 0, operation)
            }
        }
        var events: [Event] = []
        events.reserveCapacity(2 * calls.count)
        for operation in calls.indices {
            events.append(Event(neverReturns: false, time: calls[operation], isReturn: false, operation: operation))
            let returnTime = returns[operation]
            events.append(Event(neverReturns: returnTime == nil, time: returnTime ?? 0, isReturn: true, operation: operation))
        }
        events.sort { $0.order < $1.order }

        let count = events.count + 1
        next = (0..<count).map { $0 + 1 < count ? $0 + 1 : Self.end }
        prev = (0..<count).map { $0 - 1 }
        var operationOfNode = Array(repeating: Self.end, count: count)
        var returnNodeOfOperation = Array(repeating: Self.end, count: calls.count)
        for (position, event) in events.enumerated() {
            operationOfNode[position + 1] = event.operation
            if event.isReturn { returnNodeOfOperation[event.operation] = position + 1 }
        }
        var returnOfCall = Array(repeating: Self.end, count: count)
        for (position, event) in events.enumerated() where !event.isReturn {
            returnOfCall[position + 1] = returnNodeOfOperation[event.operation]
        }
        self.operationOfNode = operationOfNode
        self.returnOfCall = returnOfCall
    }

    var isEmpty: Bool { next[Self.head] == Self.end }

    /// The first node after the head, or `end`.
    var first: Int { next[Self.head] }

    func after(_ node: Int) -> Int { next[node] }

    func isCall(_ node: Int) -> Bool { returnOfCall[node] != Self.end }

    func operation(at node: Int) -> Int { operationOfNode[node] }

    /// The operations whose calls come before the first return still in the list: the ones that
    /// may be linearized next.
    var candidates: [Int] {
        var result: [Int] = []
        var node = first
        while node != Self.end, isCall(node) {
            result.append(operationOfNode[node])
            node = next[node]
        }
        return result
    }

    /// Takes a call node and its return out of the list.
    mutating func lift(call node: Int) {
        let returnNode = returnOfCall[node]
        // A call is never last: its return follows it.
        next[prev[node]] = next[node]
        prev[next[node]] = prev[node]
        next[prev[returnNode]] = next[returnNode]
        if next[returnNode] != Self.end { prev[next[returnNode]] = prev[returnNode] }
    }

    /// Puts back the last call node lifted (and its return), in the reverse order of `lift`.
    mutating func unlift(call node: Int) {
        let returnNode = returnOfCall[node]
        next[prev[returnNode]] = returnNode
        if next[returnNode] != Self.end { prev[next[returnNode]] = returnNode }
        next[prev[node]] = node
        prev[next[node]] = node
    }
}
