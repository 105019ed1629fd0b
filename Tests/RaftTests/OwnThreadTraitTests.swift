import Foundation
import TestGate
import Testing

/// `.ownThread` must really take the body off the cooperative pool: a blocking body that stayed on
/// the pool would starve the timers of every other suite (see `OwnThreadTrait`).
@Suite(".ownThread", .ownThread) struct OwnThreadTraitTests {
    @Test("a synchronous body runs on the test's own thread")
    func synchronousBody() {
        #expect(OwnThreadTrait.testOnThisThread == "synchronousBody()")
    }

    @Test("each case of a parameterized test gets its own thread", arguments: [1, 2, 3])
    func parameterized(case: Int) {
        #expect(OwnThreadTrait.testOnThisThread == "parameterized(case:)")
    }

    @Test("an asynchronous body and its structured children run there too, also after suspending")
    func asynchronousBody() async {
        let names = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<4 { group.addTask { OwnThreadTrait.testOnThisThread } }
            await Task.yield()
            return await group.reduce(into: [OwnThreadTrait.testOnThisThread]) { $0.append($1) }
        }
        #expect(names == Array(repeating: "asynchronousBody()", count: 5))
    }
}

@Test("without the trait a test runs on the cooperative pool")
func withoutOwnThread() async {
    #expect(OwnThreadTrait.testOnThisThread == nil)
}
