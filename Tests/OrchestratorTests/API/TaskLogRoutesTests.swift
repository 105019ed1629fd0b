import Foundation
import Hummingbird
import HummingbirdTesting
@testable import Orchestrator
import Testing

/// `GET /api/v1/tasks/{id}/logs` beyond the plain tail: its parameters, and the follow stream.
@Suite struct TaskLogRoutesTests {
    @Test("since: whole seconds or RFC 3339 (offsets, fractions), nothing else", arguments: [
        ("0", Int64(0)), ("1700000000", 1_700_000_000_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000), ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123), ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
        ("2023-11-14T20:13:20-02:00", 1_700_000_000_000), ("1969-12-31T23:59:59Z", 0),
    ] as [(String, Int64)])
    func sinceAccepted(text: String, unixMs: Int64) {
        #expect(LogTime.parse(text) == unixMs)
        #expect(text.range(of: LogTime.pattern, options: .regularExpression) != nil, "the document's pattern takes it too")
    }

    @Test("since: what the pattern refuses is refused", arguments: [
        "", "-1", "1.5", "123456789012", "2023-11-14", "2023-11-14 22:13:20Z", "2023-13-01T00:00:00Z",
        "2023-11-14T24:00:00Z", "2023-11-14T22:13:20", "2023-11-14t22:13:20z", "2023-11-14T22:13:20.Z",
    ])
    func sinceRefused(text: String) {
        #expect(LogTime.parse(text) == nil)
        #expect(text.range(of: LogTime.pattern, options: .regularExpression) == nil)
    }

    @Test("tail, since, stream and limit_bytes reach the source; bad values are 400 naming the parameter")
    func parameters() async throws {
        let f = APIFixture(logs: ["t001": "framed", "t002": "plain\n"])
        try await f.addNode("n1")
        try await f.test { client in
            let framed = try await client.createTask()
            let plain = try await client.createTask()
            try await f.place(framed, on: "n1")
            try await f.place(plain, on: "n1")
            let all = try await client.send(.get, "/api/v1/tasks/\(framed)/logs")
            #expect(all.text == "query - - all 1048576\nout\nerr\n")
            let some = try await client.send(.get, "/api/v1/tasks/\(framed)/logs?tail=3&since=1700000000&stream=stderr&limit_bytes=9")
            #expect(some.text == "query 3 1700000000000 stderr 9\nerr\n")
            // A source that only has the plain tail says so for the rest.
            #expect(try await client.send(.get, "/api/v1/tasks/\(plain)/logs").text == "plain\n")
            #expect(try await client.send(.get, "/api/v1/tasks/\(plain)/logs?stream=stdout").status.code == 501)
            for bad in ["tail=-1", "tail=x", "tail=1000001", "since=yesterday", "stream=both", "follow=yes", "follow="] {
                let r = try await client.send(.get, "/api/v1/tasks/\(framed)/logs?\(bad)")
                #expect(r.status == .badRequest, "\(bad)")
                #expect(r.errorMessage?.contains(String(bad.prefix { $0 != "=" })) == true, "\(bad): \(r.errorMessage ?? "-")")
            }
        }
    }

    @Test("follow=true: output events with stream, time and text, then end with the exit code, and the stream closes")
    func follow() async throws {
        let f = APIFixture(logs: ["t001": "framed"])
        try await f.addNode("n1")
        try await f.test { client in
            let framed = try await client.createTask()
            try await f.place(framed, on: "n1")
            let r = try await client.send(.get, "/api/v1/tasks/\(framed)/logs?follow=true&stream=all")
            #expect(r.header("Content-Type") == "text/event-stream")
            let expected = """
                event: output
                data: {"stream":"stdout","text":"query - - all 1048576\\n","time":"1970-01-01T00:00:00.001Z"}

                event: output
                data: {"stream":"stdout","text":"out\\n","time":"2023-11-14T22:13:20.000Z"}

                event: output
                data: {"stream":"stderr","text":"err\\n","time":"2023-11-14T22:13:20.000Z"}

                event: end
                data: {"exit_code":7}


                """
            #expect(r.text == expected)
        }
    }
}
