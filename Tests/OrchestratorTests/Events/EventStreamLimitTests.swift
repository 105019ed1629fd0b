import Foundation
import Hummingbird
import Testing
@testable import Orchestrator

/// `maxEventStreams`: each open stream holds a store watch and up to a backlog of events, so a
/// master serves a bounded number and tells the rest when to come back.
@Suite struct EventStreamLimitTests {
    @Test("past maxEventStreams a new stream is answered 503 too_many_event_streams with Retry-After; a freed slot is reused")
    func streamCap() async throws {
        let f = APIFixture(store: CountingStore()) {
            $0.maxEventStreams = 2
            $0.keepaliveInterval = .milliseconds(20)
        }
        let api = f.api
        let one = try await SSEClient.open(api, "/api/v1/events")
        let two = try await SSEClient.open(api, "/api/v1/events")
        try await poll(timeout: .seconds(60), "two streams to register") { api.openEventStreams == 2 }
        let three = try await SSEClient.open(api, "/api/v1/events")
        #expect(three.response.status.code == 503)
        #expect(three.response.headers[.retryAfter] == "5")
        #expect(try await three.waitForEnd().isSuccess)
        #expect(three.text.contains("\"too_many_event_streams\""))
        #expect(api.openEventStreams == 2)
        try await f.test { client in
            let metrics = try await client.send(.get, "/metrics")
            #expect(String(buffer: metrics.body).contains("orchestrator_event_streams_refused_total 1"))
        }
        one.disconnect()
        try await poll(timeout: .seconds(60), "the first stream to end") { api.openEventStreams == 1 }
        let four = try await SSEClient.open(api, "/api/v1/events")
        #expect(four.response.status.code == 200)
        try await poll(timeout: .seconds(60), "the new stream to register") { api.openEventStreams == 2 }
        api.closeEventStreams()
        _ = try await two.waitForEnd()
        _ = try await four.waitForEnd()
    }
}
