import Linearizability

/// A correct key-value store used by concurrent clients, simulated event by event: every operation
/// takes effect at one instant between its call and its return, so the history it records is
/// linearizable by construction, timeouts included.
///
/// At each event one client, drawn at random, moves on: an idle client calls, a called operation
/// takes effect on the store (or, rarely, is lost before it runs and times out), and an applied one
/// returns (or, rarely, its answer is lost and it times out although it took effect). A client
/// carries on after a timeout, as a real one would with a new request.
struct RegisterSimulation {
    var seed: UInt64
    var keys: Int
    var clients: Int
    var operations: Int
    /// The chance, in percent, that a call is lost before it runs, and again that an answer is lost.
    var timeoutPercent: Int = 1

    private enum ClientPhase {
        case idle
        case called(KeyValueInput, at: Int64)
        case applied(KeyValueInput, at: Int64, output: KeyValueOutput)

        var isIdle: Bool {
            guard case .idle = self else { return false }
            return true
        }
    }

    func run() -> [KeyValueOperation] {
        var random = SeededGenerator(seed: seed)
        var store: [String: String] = [:]
        var phases = Array(repeating: ClientPhase.idle, count: clients)
        var history: [KeyValueOperation] = []
        var called = 0
        var lastValue = 0
        var now: Int64 = 0

        while called < operations || !phases.allSatisfy(\.isIdle) {
            now += Int64.random(in: 1...3, using: &random)
            let client = Int.random(in: 0..<clients, using: &random)
            switch phases[client] {
            case .idle:
                guard called < operations else { continue }
                called += 1
                let key = "k\(Int.random(in: 0..<keys, using: &random))"
                let input: KeyValueInput
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<4:
                    input = .get(key: key)
                case 4..<7:
                    lastValue += 1
                    input = .put(key: key, value: "v\(lastValue)")
                default:
                    lastValue += 1
                    // Half the time the value the client last saw would be (so some succeed), else
                    // an older or made-up one (so some fail).
                    let expected: String? = Bool.random(using: &random) ? store[key] : "v\(Int.random(in: 0...lastValue, using: &random))"
                    input = .compareAndSet(key: key, expected: expected, new: "v\(lastValue)")
                }
                phases[client] = .called(input, at: now)
            case .called(let input, let call):
                if Int.random(in: 0..<100, using: &random) < timeoutPercent {
                    history.append(KeyValueOperation(client: client, call: call, input: input, outcome: .timedOut))
                    phases[client] = .idle
                } else {
                    phases[client] = .applied(input, at: call, output: Self.apply(input, to: &store))
                }
            case .applied(let input, let call, let output):
                let outcome: Outcome<KeyValueOutput> =
                    Int.random(in: 0..<100, using: &random) < timeoutPercent ? .timedOut : .returned(at: now, output: output)
                history.append(KeyValueOperation(client: client, call: call, input: input, outcome: outcome))
                phases[client] = .idle
            }
        }
        return history
    }

    /// The store's sequential behaviour, written apart from the checker's `KeyValueRegister`.
    static func apply(_ input: KeyValueInput, to store: inout [String: String]) -> KeyValueOutput {
        switch input {
        case .put(let key, let value):
            store[key] = value
            return .written
        case .get(let key):
            return .read(store[key])
        case .compareAndSet(let key, let expected, let new):
            guard store[key] == expected else { return .compareAndSet(succeeded: false) }
            store[key] = new
            return .compareAndSet(succeeded: true)
        }
    }
}
