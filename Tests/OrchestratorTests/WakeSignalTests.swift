import Testing
@testable import Orchestrator

@Suite struct WakeSignalTests {
    @Test("a signal before the wait is kept; a wait without one ends at its timeout; a signal wakes a waiter")
    func wakes() async {
        let wake = WakeSignal()
        wake.signal()
        let clock = ContinuousClock()
        var began = clock.now
        await wake.wait(timeout: .seconds(30))
        #expect(began.duration(to: clock.now) < .seconds(10), "the earlier signal counts")

        began = clock.now
        await wake.wait(timeout: .milliseconds(50))
        #expect(began.duration(to: clock.now) >= .milliseconds(50), "no signal: the timeout")

        began = clock.now
        async let waited: Void = wake.wait(timeout: .seconds(30))
        // Whether the waiter is already waiting or not yet, this one signal ends its wait.
        wake.signal()
        await waited
        #expect(began.duration(to: clock.now) < .seconds(10))
    }
}
