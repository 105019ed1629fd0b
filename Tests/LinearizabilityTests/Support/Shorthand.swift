import Linearizability

// Short constructors, so a hand-made history reads as a table: client, what, call, return.
// A put with a nil return time timed out.

func put(_ client: Int, _ value: String, _ call: Int64, _ returned: Int64?, key: String = "k") -> KeyValueOperation {
    guard let returned else { return .putTimedOut(client: client, key: key, value: value, call: call) }
    return .put(client: client, key: key, value: value, call: call, returned: returned)
}

/// A get that read `value` (nil: absent).
func get(_ client: Int, _ value: String?, _ call: Int64, _ returned: Int64, key: String = "k") -> KeyValueOperation {
    .get(client: client, key: key, call: call, returned: returned, value: value)
}

func cas(
    _ client: Int, _ expected: String?, _ new: String, _ call: Int64, _ returned: Int64, succeeded: Bool, key: String = "k"
) -> KeyValueOperation {
    .compareAndSet(client: client, key: key, expected: expected, new: new, call: call, returned: returned, succeeded: succeeded)
}

func casTimedOut(_ client: Int, _ expected: String?, _ new: String, _ call: Int64, key: String = "k") -> KeyValueOperation {
    .compareAndSetTimedOut(client: client, key: key, expected: expected, new: new, call: call)
}

/// Checks with the default budget.
func check(_ history: [KeyValueOperation], initialValues: [String: String] = [:]) -> LinearizabilityReport {
    KeyValueLinearizabilityChecker(initialValues: initialValues).check(history)
}
