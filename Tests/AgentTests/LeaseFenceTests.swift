import Testing
@testable import Agent

/// The fencing rule as tables: times are offsets from an arbitrary instant, no sleeping.
@Suite struct LeaseFenceTests {
    static let t0 = ContinuousClock.now

    struct Row: Sendable, CustomTestStringConvertible {
        var lease: Duration
        var stopGrace: Duration
        /// When the last acknowledged heartbeat was sent, and now, after t0.
        var sent: Duration
        var now: Duration
        var expected: Expected
        var testDescription: String { "lease \(lease), grace \(stopGrace), sent +\(sent), now +\(now)" }
    }

    enum Expected: Sendable, Equatable {
        case keep(until: Duration)
        case stop(grace: Duration)
    }

    // Default lease 13 s, stop grace 10 s: the fence grace is 13/5 = 2.6 s, so SIGTERM at
    // sent + 10.4 s and SIGKILL by sent + 13 s. Short test lease 3 s: grace 0.6 s, fence at 2.4 s.
    static let rows: [Row] = [
        // Just acknowledged: keep until sent + 13 - 2.6.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .zero, expected: .keep(until: .milliseconds(10_400))),
        // A heartbeat a few seconds late (an election) is no reason to stop.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .seconds(5), expected: .keep(until: .milliseconds(10_400))),
        // A newer acknowledged send moves the fence on.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .seconds(4), now: .seconds(12), expected: .keep(until: .milliseconds(14_400))),
        // One millisecond before the fence: keep.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .milliseconds(10_399), expected: .keep(until: .milliseconds(10_400))),
        // At the fence: stop with the whole fence grace, so SIGKILL lands when the lease ends.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .milliseconds(10_400), expected: .stop(grace: .milliseconds(2_600))),
        // Late (the timer fired late): only what is left.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .seconds(12), expected: .stop(grace: .seconds(1))),
        // Past the end (the worker was suspended): no grace at all.
        Row(lease: .seconds(13), stopGrace: .seconds(10), sent: .zero, now: .seconds(30), expected: .stop(grace: .zero)),
        // A short normal grace is kept: the fence begins only 1 s before the end.
        Row(lease: .seconds(13), stopGrace: .seconds(1), sent: .zero, now: .milliseconds(11_999), expected: .keep(until: .seconds(12))),
        Row(lease: .seconds(13), stopGrace: .seconds(1), sent: .zero, now: .seconds(12), expected: .stop(grace: .seconds(1))),
        // Zero grace: the fence begins when the lease ends.
        Row(lease: .seconds(13), stopGrace: .zero, sent: .zero, now: .seconds(13), expected: .stop(grace: .zero)),
        // --lease-ms 3000: grace 600 ms, fence at 2.4 s.
        Row(lease: .seconds(3), stopGrace: .seconds(10), sent: .seconds(1), now: .seconds(3), expected: .keep(until: .milliseconds(3_400))),
        Row(lease: .seconds(3), stopGrace: .seconds(10), sent: .seconds(1), now: .milliseconds(3_500), expected: .stop(grace: .milliseconds(500))),
    ]

    @Test("keep until a fifth of the lease (at most the stop grace) before it ends, then stop with what is left", arguments: rows)
    func decisions(_ row: Row) {
        let fence = LeaseFence(lease: row.lease, stopGrace: row.stopGrace)
        let decision = fence.decide(now: Self.t0 + row.now, lastAcknowledgedSend: Self.t0 + row.sent)
        switch row.expected {
        case .keep(let until): #expect(decision == .keep(until: Self.t0 + until))
        case .stop(let grace): #expect(decision == .stop(grace: grace))
        }
    }

    struct LeaseRow: Sendable, CustomTestStringConvertible {
        var told: Duration?
        var configured: Duration?
        var expected: Duration
        var testDescription: String { "masters \(told.map { "\($0)" } ?? "-"), --lease-ms \(configured.map { "\($0)" } ?? "-")" }
    }

    @Test("the lease in force: the masters', shortened (never lengthened) by --lease-ms; 13 s before any master told one", arguments: [
        LeaseRow(told: nil, configured: nil, expected: .seconds(13)),
        LeaseRow(told: .seconds(10), configured: nil, expected: .seconds(10)),
        LeaseRow(told: .seconds(10), configured: .seconds(3), expected: .seconds(3)),
        LeaseRow(told: .seconds(10), configured: .seconds(60), expected: .seconds(10)),
        LeaseRow(told: nil, configured: .seconds(3), expected: .seconds(3)),
        LeaseRow(told: nil, configured: .seconds(60), expected: .seconds(13)),
    ])
    func effectiveLease(_ row: LeaseRow) {
        #expect(LeaseFence.effectiveLease(told: row.told, configured: row.configured) == row.expected)
    }
}
