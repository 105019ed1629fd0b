/// The median of `values`; for an even count the upper of the two middle values, as the raft,
/// scheduler and etcd benchmarks have always reported it (`bench raft failover --trials 12`
/// reports the 7th of 12 trials). 0 when empty.
public func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// The `p` quantile (0...1) of values already sorted ascending, nearest rank: the value below
/// which a fraction `p` of them lie; 0 when empty.
public func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

extension Duration {
    /// This duration in seconds, with its fraction.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// This duration in milliseconds, with its fraction.
    public var inMilliseconds: Double {
        Double(components.seconds) * 1_000 + Double(components.attoseconds) / 1e15
    }
}
