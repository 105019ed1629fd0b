@testable import Linearizability
import Testing
import TestGate

/// The search on its own, with a specification other than the register: it is generic.
@Suite(.ownThread) struct SearchTests {
    /// A counter: `increment` answers nothing, `read` answers the count.
    struct Counter: SequentialSpecification {
        enum Input { case increment, read }
        var initialState: Int { 0 }

        func step(from state: Int, input: Input, output: Int?) -> Int? {
            switch input {
            case .increment: return state + 1
            case .read: return output == nil || output == state ? state : nil
            }
        }

        func describe(_ state: Int) -> String { "\(state)" }
    }

    typealias CounterOperation = HistoryOperation<Counter.Input, Int>

    static func increment(_ call: Int64, _ returned: Int64) -> CounterOperation {
        CounterOperation(client: 0, call: call, input: .increment, outcome: .returned(at: returned, output: 0))
    }

    static func read(_ value: Int, _ call: Int64, _ returned: Int64) -> CounterOperation {
        CounterOperation(client: 1, call: call, input: .read, outcome: .returned(at: returned, output: value))
    }

    @Test("a linearization respects real time: sequential operations come out in call order")
    func sequentialOrder() {
        let result = LinearizationSearch.run(
            [Self.increment(0, 1), Self.read(1, 2, 3), Self.increment(4, 5), Self.read(2, 6, 7)], specification: Counter(), stepBudget: 100
        )
        #expect(result.verdict == .linearizable)
        #expect(result.linearization == [0, 1, 2, 3])
        #expect(result.stateAfterLinearization == 2)
    }

    @Test("a read concurrent with two increments may see 0, 1 or 2 but not 3", arguments: [0, 1, 2, 3])
    func concurrentReads(value: Int) {
        let result = LinearizationSearch.run(
            [Self.increment(0, 10), Self.increment(5, 15), Self.read(value, 6, 8)], specification: Counter(), stepBudget: 100
        )
        let expected: LinearizationSearchResult<Int>.Verdict = value <= 2 ? .linearizable : .notLinearizable
        #expect(result.verdict == expected)
        if value <= 2 {
            // The read goes after exactly `value` increments.
            #expect(result.linearization.firstIndex(of: 2) == value)
        }
    }

    @Test("the event list puts back exactly what it lifted, in reverse order")
    func eventListRestores() {
        var events = EventList(calls: [0, 5, 7], returns: [10, nil, 8])
        // Time order: call 0, call 1, call 2, return 2, return 0, return 1 (never returns: last).
        #expect(events.candidates == [0, 1, 2])
        let call1 = events.after(events.first)
        events.lift(call: call1)
        #expect(events.candidates == [0, 2])
        let call2 = events.after(events.first)
        events.lift(call: call2)
        #expect(events.candidates == [0])
        events.unlift(call: call2)
        events.unlift(call: call1)
        #expect(events.candidates == [0, 1, 2])
        var node = events.first
        var order: [(Int, Bool)] = []
        while node != EventList.end {
            order.append((events.operation(at: node), events.isCall(node)))
            node = events.after(node)
        }
        #expect(order.map { $0.0 } == [0, 1, 2, 2, 0, 1])
        #expect(order.map { $0.1 } == [true, true, true, false, false, false])
    }
}
