import Linearizability
import Testing
import TestGate

@Suite(.ownThread) struct RenderingTests {
    @Test("one line per operation in call order: client, call, return or timeout, the call, the answer; columns aligned")
    func history() {
        let text = renderHistory([
            get(3, "v1", 30, 40),
            put(1, "v1", 0, 10),
            put(2, "v2", 5, nil),
            cas(1, nil, "a", 12, 20, succeeded: false),
        ])
        #expect(text == """
            client 1  call 0   return 10  put "k" "v1"           ok
            client 2  call 5   timeout    put "k" "v2"           unknown
            client 1  call 12  return 20  cas "k" absent -> "a"  failed
            client 3  call 30  return 40  get "k"                "v1"
            """, "\n\(text)")
    }

    @Test("an absent value, an empty one and one with a quote or a newline stay distinguishable")
    func values() {
        let text = renderHistory([get(1, nil, 0, 1), get(1, "", 2, 3), get(1, "say \"hi\"\n", 4, 5)])
        #expect(text == """
            client 1  call 0  return 1  get "k"  absent
            client 1  call 2  return 3  get "k"  ""
            client 1  call 4  return 5  get "k"  "say \\"hi\\"\\n"
            """, "\n\(text)")
    }

    @Test("operations called at the same instant keep the order given")
    func ties() {
        let text = renderHistory([put(2, "b", 0, 5), put(1, "a", 0, 5)])
        #expect(text.split(separator: "\n").map { $0.hasPrefix("client 2") } == [true, false], "\n\(text)")
    }

    @Test("a violation's description names the key, the prefix, the value it leaves and what does not fit")
    func violationDescription() throws {
        let report = check([put(1, "v1", 0, 10), put(2, "v2", 20, 30), get(3, "v1", 40, 50)])
        let violation = try #require(report.violations.first)
        #expect(violation.description == """
            key "k" is not linearizable: the longest linearizable prefix found has 2 of 3 operations and leaves the \
            value "v2", where no operation that could come next fits:
              client 3  call 40  return 50  get "k"  "v1"
            the prefix:
              client 1  call 0   return 10  put "k" "v1"  ok
              client 2  call 20  return 30  put "k" "v2"  ok
            """, "\n\(violation.description)")
        #expect(report.summary.hasPrefix("not linearizable on \"k\": 1 key, 3 operations, "), "\(report.summary)")
        #expect(report.summary.hasSuffix(violation.description))
    }
}
