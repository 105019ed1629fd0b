import Raft
import Testing
@testable import Store

/// The storage quota's deterministic half (`StoreQuota`): the running count of retained bytes,
/// and what the NOSPACE alarm lets through.
@Suite struct QuotaTests {
    @Test("dataBytes kept while applying equals a count from scratch, through random writes, lease grants and revokes, compactions and a snapshot round trip", arguments: [3, 1984, 65_537] as [UInt64])
    func runningCountMatches(seed: UInt64) throws {
        var gen = CommandGenerator(rng: SplitMix64(seed: seed))
        var store = KeyValueStore()
        for step in 0..<3_000 {
            _ = store.apply(gen.command())
            if step % 250 == 249 {
                #expect(store.dataBytes == store.countDataBytes(), "seed \(seed), step \(step)")
            }
        }
        #expect(store.dataBytes > 0)
        let restored = try KeyValueStore(snapshot: store.snapshotBytes())
        #expect(restored.dataBytes == store.dataBytes && restored == store, "seed \(seed)")
    }

    static func put(_ key: String, _ value: String) -> Command {
        .put(PutRequest(key: Array(key.utf8), value: Array(value.utf8)))
    }

    @Test("under NOSPACE what grows the store is refused on apply (a new key, a larger value, a txn putting one, a lease); reads, deletes, compaction and puts no larger than the value they replace go on; the alarm survives a snapshot and clears")
    func capped() throws {
        var store = KeyValueStore()
        _ = store.apply(Self.put("a", "1234"))
        _ = store.apply(Self.put("b", "1234"))
        let alarm = StoreAlarm(memberID: 3, kind: .noSpace)
        #expect(store.apply(.alarm(.activate, alarm)).response == .alarm(revision: 3, changed: [alarm]))
        #expect(store.apply(.alarm(.activate, alarm)).response == .alarm(revision: 3, changed: []))
        #expect(store.isOverQuota && store.revision == 3)
        let refused: [Command] = [
            Self.put("c", "x"), Self.put("a", "12345"),
            .txn(TxnRequest(compares: [], success: [.put(PutRequest(key: Array("c".utf8), value: []))], failure: [])),
            .leaseGrant(id: 0, ttl: 60, now: 0),
            .identified(RequestID(high: 1, low: 2), Self.put("d", "y")),
        ]
        for command in refused {
            #expect(store.apply(command).response == .failure(.noSpace), "\(command)")
        }
        #expect(store.revision == 3)
        #expect(store.apply(Self.put("a", "4321")).response.isFailure == false)
        #expect(store.apply(Self.put("b", "12")).response.isFailure == false)
        #expect(store.apply(.deleteRange(DeleteRangeRequest(key: Array("a".utf8)))).response.isFailure == false)
        #expect(store.apply(.compact(revision: store.revision)).response.isFailure == false)
        #expect(store.get(Array("b".utf8))?.value == Array("12".utf8))

        let restored = try KeyValueStore(snapshot: store.snapshotBytes())
        #expect(restored.alarms == [alarm] && restored == store)
        #expect(store.apply(.alarm(.deactivate, alarm)).response == .alarm(revision: store.revision, changed: [alarm]))
        #expect(!store.isOverQuota)
        #expect(store.apply(Self.put("c", "x")).response.isFailure == false)
    }

    @Test("alarm commands and their responses survive the codec")
    func codec() throws {
        let alarm = StoreAlarm(memberID: 0xfeed, kind: .noSpace)
        for command in [Command.alarm(.activate, alarm), .alarm(.deactivate, alarm), .identified(RequestID(high: 7, low: 9), .alarm(.activate, alarm))] {
            #expect(try Command(decoding: command.encoded()) == command)
        }
        for response in [Response.alarm(revision: 12, changed: [alarm]), .alarm(revision: 1, changed: []), .failure(.noSpace)] {
            #expect(try Response(decoding: response.encoded()) == response)
        }
        #expect(alarm.description == "memberID:feed alarm:NOSPACE")
    }
}

extension Response {
    var isFailure: Bool { if case .failure = self { true } else { false } }
}
