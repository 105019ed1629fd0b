/// A call to an etcd-style key-value store, as the register workload makes it.
public enum KeyValueInput: Hashable, Sendable {
    case put(key: String, value: String)
    case get(key: String)
    /// A transaction that writes `new` if the key holds `expected` (nil: the key does not exist,
    /// etcd's `create_revision == 0`).
    case compareAndSet(key: String, expected: String?, new: String)

    public var key: String {
        switch self {
        case .put(let key, _), .get(let key), .compareAndSet(let key, _, _): key
        }
    }
}

/// What the store answered.
public enum KeyValueOutput: Hashable, Sendable {
    case written
    /// The value read; nil when the key does not exist.
    case read(String?)
    case compareAndSet(succeeded: Bool)
}

/// One operation of a register workload.
public typealias KeyValueOperation = HistoryOperation<KeyValueInput, KeyValueOutput>

/// One key of the store as a register: its value, or nil while the key does not exist.
///
/// The history is split per key before the search (porcupine's partitioning, sound because the
/// operations each touch one key and linearizability is compositional), so every operation given
/// to `step` is on the same key and the state is one optional value.
public struct KeyValueRegister: SequentialSpecification, Sendable {
    /// The key's value, or nil while the key does not exist. A struct rather than a bare `String?`,
    /// so that `step`'s nil (the answer is impossible) cannot be mistaken for an absent key.
    public struct State: Hashable, Sendable {
        public var value: String?

        public init(value: String?) {
            self.value = value
        }
    }

    public var initialState: State

    /// - Parameter initialValue: the key's value when the history begins (nil: it does not exist).
    public init(initialValue: String? = nil) {
        initialState = State(value: initialValue)
    }

    public func step(from state: State, input: KeyValueInput, output: KeyValueOutput?) -> State? {
        switch (input, output) {
        case (.put(_, let value), .written), (.put(_, let value), nil):
            return State(value: value)
        case (.get, .read(let value)):
            return value == state.value ? state : nil
        case (.get, nil):
            return state
        case (.compareAndSet(_, let expected, let new), .compareAndSet(let succeeded)):
            guard (state.value == expected) == succeeded else { return nil }
            return succeeded ? State(value: new) : state
        case (.compareAndSet(_, let expected, let new), nil):
            // If it ran, it succeeded exactly when the comparison held. If it never ran, linearizing
            // it last (its return is at infinity) leaves every answer seen by others unchanged.
            return state.value == expected ? State(value: new) : state
        case (.put, _), (.get, _), (.compareAndSet, _):
            // An answer of the wrong kind: the workload recorded it wrongly. The factories below
            // cannot build one; a report shows the operation as one that cannot be linearized.
            return nil
        }
    }

    public func describe(_ state: State) -> String {
        describeValue(state.value)
    }
}

/// A value as reports print it: quoted with escapes, so "" and a space are visible, or "absent".
func describeValue(_ value: String?) -> String {
    value.map { String(reflecting: $0) } ?? "absent"
}

extension HistoryOperation where Input == KeyValueInput, Output == KeyValueOutput {
    public static func put(client: Int, key: String, value: String, call: Int64, returned: Int64) -> Self {
        Self(client: client, call: call, input: .put(key: key, value: value), outcome: .returned(at: returned, output: .written))
    }

    /// A put whose answer never came: it may or may not have been applied.
    public static func putTimedOut(client: Int, key: String, value: String, call: Int64) -> Self {
        Self(client: client, call: call, input: .put(key: key, value: value), outcome: .timedOut)
    }

    /// A get that read `value` (nil: the key did not exist).
    public static func get(client: Int, key: String, call: Int64, returned: Int64, value: String?) -> Self {
        Self(client: client, call: call, input: .get(key: key), outcome: .returned(at: returned, output: .read(value)))
    }

    /// A get whose answer never came: it changed nothing and tells nothing, so the checker drops it.
    public static func getTimedOut(client: Int, key: String, call: Int64) -> Self {
        Self(client: client, call: call, input: .get(key: key), outcome: .timedOut)
    }

    public static func compareAndSet(
        client: Int, key: String, expected: String?, new: String, call: Int64, returned: Int64, succeeded: Bool
    ) -> Self {
        Self(
            client: client, call: call, input: .compareAndSet(key: key, expected: expected, new: new),
            outcome: .returned(at: returned, output: .compareAndSet(succeeded: succeeded))
        )
    }

    /// A compare-and-set whose answer never came: it may have run (and then it succeeded exactly if
    /// the comparison held) or not.
    public static func compareAndSetTimedOut(client: Int, key: String, expected: String?, new: String, call: Int64) -> Self {
        Self(client: client, call: call, input: .compareAndSet(key: key, expected: expected, new: new), outcome: .timedOut)
    }
}
