import Foundation
import Synchronization

/// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
/// exposition format 0.0.4. The API records its HTTP metrics here; the master feeds its own
/// (scheduler placements, reconcile rounds, …) through the same calls, and `GET /metrics` renders
/// them all. Thread-safe; the first `help` given for a name is kept.
public final class MetricsRegistry: Sendable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// Upper bounds (seconds) of the request-duration histogram: 1 ms to 10 s.
    public static let durationBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct Histogram: Sendable {
        var bounds: [Double]
        var counts: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0

        mutating func observe(_ value: Double) {
            for (i, bound) in bounds.enumerated() where value <= bound { counts[i] += 1 }
            sum += value
            count += 1
        }
    }

    struct Family: Sendable {
        var kind: Kind
        var help: String
        var values: [String: Double] = [:]
        var histograms: [String: Histogram] = [:]
    }

    private let families = Mutex([String: Family]())
    private let collectors = Mutex([@Sendable () -> [Gauge]]())

    public init() {}

    /// Adds `amount` (≥ 0) to a counter.
    public func increment(_ name: String, by amount: Double = 1, labels: [String: String] = [:], help: String) {
        let key = Self.labelText(labels)
        families.withLock { f in
            f[name, default: Family(kind: .counter, help: help)].values[key, default: 0] += max(amount, 0)
        }
    }

    /// Sets a gauge.
    public func set(_ name: String, _ value: Double, labels: [String: String] = [:], help: String) {
        families.withLock { f in
            f[name, default: Family(kind: .gauge, help: help)].values[Self.labelText(labels)] = value
        }
    }

    /// Records one observation in a histogram with the given bucket upper bounds (ascending).
    public func observe(_ name: String, _ value: Double, labels: [String: String] = [:],
                        buckets: [Double] = MetricsRegistry.durationBuckets, help: String) {
        let key = Self.labelText(labels)
        families.withLock { f in
            // Changed in place: a copy of the family taken out and put back copied its whole
            // table of histograms on every request.
            f[name, default: Family(kind: .histogram, help: help)]
                .histograms[key, default: Histogram(bounds: buckets, counts: Array(repeating: 0, count: buckets.count))]
                .observe(value)
        }
    }

    /// The current value of a counter or gauge (tests, diagnostics).
    public func value(_ name: String, labels: [String: String] = [:]) -> Double? {
        families.withLock { $0[name]?.values[Self.labelText(labels)] }
    }

    /// A family computed at scrape time (such as tasks by state), rendered with the registry; a
    /// counter when it is one kept elsewhere (a transport's refusals).
    public struct Gauge: Sendable {
        public var name: String
        public var help: String
        public var kind: Kind
        public var samples: [(labels: [String: String], value: Double)]

        public init(_ name: String, help: String, kind: Kind = .gauge, samples: [(labels: [String: String], value: Double)]) {
            self.name = name
            self.help = help
            self.kind = kind
            self.samples = samples
        }

        public init(_ name: String, help: String, kind: Kind = .gauge, value: Double) {
            self.init(name, help: help, kind: kind, samples: [(labels: [:], value: value)])
        }
    }

    /// Adds families computed at every scrape, for numbers kept by their owner (a server's
    /// connection and stream counters) rather than pushed here.
    public func addCollector(_ collect: @escaping @Sendable () -> [Gauge]) {
        collectors.withLock { $0.append(collect) }
    }

    /// The text exposition of everything registered plus `snapshot`, families sorted by name so
    /// the output is stable.
    public func render(snapshot: [Gauge] = []) -> String {
        var all = families.withLock { $0 }
        let collected = collectors.withLock { $0 }.flatMap { $0() }
        for s in collected + snapshot {
            var family = all[s.name].flatMap { $0.kind == s.kind ? $0 : nil } ?? Family(kind: s.kind, help: s.help)
            for sample in s.samples { family.values[Self.labelText(sample.labels)] = sample.value }
            all[s.name] = family
        }
        var out = ""
        for name in all.keys.sorted() {
            let family = all[name]!
            out += "# HELP \(name) \(Self.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
            for key in family.values.keys.sorted() {
                out += "\(name)\(key.isEmpty ? "" : "{\(key)}") \(Self.format(family.values[key]!))\n"
            }
            for key in family.histograms.keys.sorted() {
                let h = family.histograms[key]!
                let prefix = key.isEmpty ? "" : key + ","
                for (bound, count) in zip(h.bounds, h.counts) {
                    out += "\(name)_bucket{\(prefix)le=\"\(Self.format(bound))\"} \(count)\n"
                }
                out += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(h.count)\n"
                out += "\(name)_sum\(key.isEmpty ? "" : "{\(key)}") \(Self.format(h.sum))\n"
                out += "\(name)_count\(key.isEmpty ? "" : "{\(key)}") \(h.count)\n"
            }
        }
        return out
    }

    /// `a="1",b="2"`: sorted by label name, values escaped as the format requires.
    static func labelText(_ labels: [String: String]) -> String {
        labels.keys.sorted().map { "\($0)=\"\(escapeLabel(labels[$0]!))\"" }.joined(separator: ",")
    }

    static func escapeLabel(_ s: String) -> String {
        // Label values are route patterns, methods and codes: almost never anything to escape,
        // and three Foundation replacements per label took 2% of a master serving submissions.
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else { return s }
        return s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction; everything else in Swift's shortest round-tripping form.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
