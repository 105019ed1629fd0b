import Raft
import Testing
@testable import Store


/// Random commands over a small key space, so they collide and exercise history and txns.
struct CommandGenerator {
    var rng: SplitMix64

    mutating func int(_ range: ClosedRange<Int64>) -> Int64 { Int64.random(in: range, using: &rng) }
    mutating func bool() -> Bool { Bool.random(using: &rng) }
    mutating func key() -> [UInt8] { Array("k\(int(0...9))".utf8) }
    mutating func bytes() -> [UInt8] { (0..<int(0...8)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
    mutating func rangeEnd() -> [UInt8] { [[], [0], Array("k\(int(5...9))".utf8)][Int(int(0...2))] }
    /// Any Int64, including the extremes, to exercise varint edges.
    mutating func anyInt() -> Int64 { [Int64.min, .max, -1, 0, 1, int(-1000...1000), Int64(bitPattern: rng.next())][Int(int(0...6))] }

    mutating func op() -> RequestOp {
        switch int(0...2) {
        case 0: .range(RangeRequest(key: key(), rangeEnd: rangeEnd(), revision: int(0...3), limit: int(0...3), countOnly: bool(),
                                    keysOnly: bool(), sortOrder: SortOrder.allCases.randomElement(using: &rng)!,
                                    sortTarget: SortTarget.allCases.randomElement(using: &rng)!))
        case 1: .put(PutRequest(key: key(), value: bytes(), lease: int(0...2), prevKV: bool()))
        default: .deleteRange(DeleteRangeRequest(key: key(), rangeEnd: rangeEnd(), prevKV: bool()))
        }
    }

    mutating func command() -> Command {
        switch int(0...10) {
        case 0, 1, 2: return .put(PutRequest(key: key(), value: bytes(), lease: int(0...3) == 0 ? int(1...3) : 0, prevKV: bool()))
        case 3: return .deleteRange(DeleteRangeRequest(key: key(), rangeEnd: rangeEnd(), prevKV: bool()))
        case 4, 5:
            let targets: [CompareTarget] = [.version(int(0...3)), .createRevision(int(0...20)), .modRevision(int(0...20)),
                                            .value(bytes()), .lease(int(0...3))]
            let compares = (0..<int(0...2)).map { _ in
                Compare(key: key(), rangeEnd: int(0...3) == 0 ? rangeEnd() : [],
                        CompareResult.allCases.randomElement(using: &rng)!, targets.randomElement(using: &rng)!)
            }
            return .txn(TxnRequest(compares: compares, success: (0..<int(0...3)).map { _ in op() },
                                   failure: (0..<int(0...3)).map { _ in op() }))
        case 6: return .compact(revision: int(0...30))
        case 7: return .leaseGrant(id: int(0...3), ttl: int(1...10), now: anyInt())
        case 8: return .leaseRevoke(id: int(0...3))
        case 9: return .leaseRenewAll(now: anyInt())
        default: return .leaseKeepAlive(id: int(0...3), now: anyInt())
        }
    }
}

@Suite struct CommandCodecTests {
    @Test func randomCommandsRoundTrip() throws {
        var gen = CommandGenerator(rng: SplitMix64(seed: 42))
        for _ in 0..<2_000 {
            let command = gen.command()
            let bytes = command.encoded()
            #expect(bytes.first == 1)                        // the format version leads
            #expect(try Command(decoding: bytes) == command)
        }
    }

    @Test func extremeIntegersRoundTrip() throws {
        for v: Int64 in [.min, .max, -1, 0, 1, 63, 64, -64, -65, 1 << 62] {
            let c = Command.leaseGrant(id: v, ttl: v, now: v)
            #expect(try Command(decoding: c.encoded()) == c)
        }
    }

    @Test func responsesRoundTrip() throws {
        var store = KeyValueStore()
        var gen = CommandGenerator(rng: SplitMix64(seed: 7))
        var kinds = Set<String>()
        for _ in 0..<1_000 {
            let response = store.apply(gen.command()).response
            kinds.insert("\(response)".prefix(while: { $0 != "(" }).description)
            #expect(try Response(decoding: response.encoded()) == response)
        }
        #expect(kinds.count >= 8)                            // every response kind, failures included
        for e: StoreError in [.emptyKey, .requestTooLarge(size: 5, limit: 4), .invalidRange, .compacted(3),
                              .futureRevision(requested: 9, current: 2), .leaseNotFound(1), .leaseExists(2),
                              .invalidTTL(-1), .duplicateKey, .malformed("why")] {
            #expect(try Response(decoding: Response.failure(e).encoded()) == .failure(e))
        }
    }

    @Test func malformedBytesAreRejected() throws {
        let valid = Command.txn(TxnRequest(compares: [Compare(key: [1], .equal, .value([2, 3]))],
                                           success: [.put(PutRequest(key: [1], value: [9]))],
                                           failure: [.deleteRange(DeleteRangeRequest(key: [1]))])).encoded()
        #expect(throws: StoreError.self) { try Command(decoding: []) }
        #expect(throws: StoreError.malformed("unknown format version 2")) { try Command(decoding: [2, 0]) }
        #expect(throws: StoreError.malformed("unknown command 99")) { try Command(decoding: [1, 99]) }
        #expect(throws: StoreError.malformed("1 trailing bytes")) { try Command(decoding: valid + [0]) }
        // Every truncation fails cleanly.
        for n in 0..<valid.count {
            #expect(throws: StoreError.self) { try Command(decoding: Array(valid[..<n])) }
        }
        // A forged huge length or count is refused without allocating.
        #expect(throws: StoreError.self) { try Command(decoding: [1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]) }
        #expect(throws: StoreError.self) { try Command(decoding: [1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) }
        // A varint longer than 64 bits.
        #expect(throws: StoreError.self) { try Command(decoding: [1, 3] + [UInt8](repeating: 0xff, count: 11)) }
        // Random garbage never crashes; whatever decodes re-encodes to the same bytes.
        var rng = SplitMix64(seed: 99)
        for _ in 0..<5_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let c = try? Command(decoding: bytes) { #expect(c.encoded() == bytes) }
            _ = try? Response(decoding: bytes)
            _ = try? KeyValueStore(snapshot: bytes)
        }
    }
}
