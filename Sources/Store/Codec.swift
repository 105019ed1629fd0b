/// A hand-written compact binary encoding for commands, responses and snapshots.
///
/// Integers are LEB128 varints (signed ones zig-zag encoded), byte strings are length-prefixed, and
/// every top-level message starts with a format version byte so the format can evolve while old log
/// entries stay readable. Decoding checks every length against the bytes left, so malformed or hostile
/// input yields `StoreError.malformed`, never a crash or a huge allocation.

/// The current format version of encoded commands, responses and snapshots.
let codecVersion: UInt8 = 1

/// Appends encoded values to a byte buffer.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func uvarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func int(_ v: Int64) {
        uvarint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    mutating func data(_ v: [UInt8]) {
        uvarint(UInt64(v.count))
        bytes.append(contentsOf: v)
    }
}

/// Reads encoded values, failing with `StoreError.malformed` on anything out of place.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func u8() throws(StoreError) -> UInt8 {
        guard offset < bytes.count else { throw .malformed("truncated at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uvarint() throws(StoreError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            if shift == 63 && byte > 1 { throw .malformed("varint overflow at byte \(offset)") }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                // Only the shortest form is valid, so every value has exactly one encoding.
                if byte == 0 && shift > 0 { throw .malformed("non-minimal varint at byte \(offset - 1)") }
                return result
            }
            shift += 7
            if shift > 63 { throw .malformed("varint too long at byte \(offset)") }
        }
    }

    mutating func int() throws(StoreError) -> Int64 {
        let z = try uvarint()
        return Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1)))
    }

    mutating func bool() throws(StoreError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        case let v: throw .malformed("bad boolean \(v) at byte \(offset - 1)")
        }
    }

    mutating func data() throws(StoreError) -> [UInt8] {
        let n = try uvarint()
        guard n <= UInt64(remaining) else { throw .malformed("length \(n) exceeds the \(remaining) bytes left") }
        defer { offset += Int(n) }
        return Array(bytes[offset..<offset + Int(n)])
    }

    /// A count of elements that each take at least one byte: bounded by the bytes left, so a forged
    /// count cannot make us reserve memory.
    mutating func count() throws(StoreError) -> Int {
        let n = try uvarint()
        guard n <= UInt64(remaining) else { throw .malformed("count \(n) exceeds the \(remaining) bytes left") }
        return Int(n)
    }

    mutating func version() throws(StoreError) {
        let v = try u8()
        guard v == codecVersion else { throw .malformed("unknown format version \(v)") }
    }

    func finish() throws(StoreError) {
        guard remaining == 0 else { throw .malformed("\(remaining) trailing bytes") }
    }

    mutating func list<T>(_ element: (inout ByteReader) throws(StoreError) -> T) throws(StoreError) -> [T] {
        let n = try count()
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    mutating func enumValue<E: RawRepresentable<UInt8>>(_: E.Type) throws(StoreError) -> E {
        let raw = try u8()
        guard let v = E(rawValue: raw) else { throw .malformed("bad \(E.self) \(raw) at byte \(offset - 1)") }
        return v
    }
}

// MARK: Field encodings

extension ByteWriter {
    mutating func kv(_ kv: KeyValue) {
        data(kv.key); int(kv.createRevision); int(kv.modRevision); int(kv.version); data(kv.value); int(kv.lease)
    }

    mutating func optionalKV(_ kv: KeyValue?) {
        if let kv { bool(true); self.kv(kv) } else { bool(false) }
    }

    mutating func kvs(_ kvs: [KeyValue]) {
        uvarint(UInt64(kvs.count))
        for v in kvs { kv(v) }
    }

    mutating func range(_ r: RangeRequest) {
        data(r.key); data(r.rangeEnd); int(r.revision); int(r.limit); bool(r.countOnly); bool(r.keysOnly)
        u8(r.sortOrder.rawValue); u8(r.sortTarget.rawValue)
    }

    mutating func put(_ r: PutRequest) { data(r.key); data(r.value); int(r.lease); bool(r.prevKV) }

    mutating func delete(_ r: DeleteRangeRequest) { data(r.key); data(r.rangeEnd); bool(r.prevKV) }

    mutating func op(_ op: RequestOp) {
        switch op {
        case .range(let r): u8(0); range(r)
        case .put(let r): u8(1); put(r)
        case .deleteRange(let r): u8(2); delete(r)
        }
    }

    mutating func compare(_ c: Compare) {
        data(c.key); data(c.rangeEnd); u8(c.result.rawValue)
        switch c.target {
        case .version(let v): u8(0); int(v)
        case .createRevision(let v): u8(1); int(v)
        case .modRevision(let v): u8(2); int(v)
        case .value(let v): u8(3); data(v)
        case .lease(let v): u8(4); int(v)
        }
    }

    mutating func rangeResponse(_ r: RangeResponse) { int(r.revision); kvs(r.kvs); bool(r.more); int(r.count) }
    mutating func putResponse(_ r: PutResponse) { int(r.revision); optionalKV(r.prevKV) }
    mutating func deleteResponse(_ r: DeleteRangeResponse) { int(r.revision); int(r.deleted); kvs(r.prevKVs) }

    mutating func event(_ e: WatchEvent) { u8(e.kind.rawValue); kv(e.kv); optionalKV(e.prevKV) }

    mutating func error(_ e: StoreError) {
        switch e {
        case .emptyKey: u8(0)
        case .requestTooLarge(let size, let limit): u8(1); int(Int64(size)); int(Int64(limit))
        case .invalidRange: u8(2)
        case .compacted(let rev): u8(3); int(rev)
        case .futureRevision(let requested, let current): u8(4); int(requested); int(current)
        case .leaseNotFound(let id): u8(5); int(id)
        case .leaseExists(let id): u8(6); int(id)
        case .invalidTTL(let ttl): u8(7); int(ttl)
        case .duplicateKey: u8(8)
        case .malformed(let why): u8(9); data(Array(why.utf8))
        case .noSpace: u8(10)
        }
    }
}

extension ByteReader {
    mutating func kv() throws(StoreError) -> KeyValue {
        KeyValue(key: try data(), createRevision: try int(), modRevision: try int(), version: try int(),
                 value: try data(), lease: try int())
    }

    mutating func optionalKV() throws(StoreError) -> KeyValue? { try bool() ? try kv() : nil }

    mutating func kvs() throws(StoreError) -> [KeyValue] { try list { (r: inout ByteReader) throws(StoreError) in try r.kv() } }

    mutating func range() throws(StoreError) -> RangeRequest {
        RangeRequest(key: try data(), rangeEnd: try data(), revision: try int(), limit: try int(), countOnly: try bool(),
                     keysOnly: try bool(), sortOrder: try enumValue(SortOrder.self), sortTarget: try enumValue(SortTarget.self))
    }

    mutating func put() throws(StoreError) -> PutRequest {
        PutRequest(key: try data(), value: try data(), lease: try int(), prevKV: try bool())
    }

    mutating func delete() throws(StoreError) -> DeleteRangeRequest {
        DeleteRangeRequest(key: try data(), rangeEnd: try data(), prevKV: try bool())
    }

    mutating func op() throws(StoreError) -> RequestOp {
        switch try u8() {
        case 0: return .range(try range())
        case 1: return .put(try put())
        case 2: return .deleteRange(try delete())
        case let t: throw .malformed("unknown txn op \(t)")
        }
    }

    mutating func compare() throws(StoreError) -> Compare {
        let key = try data(), rangeEnd = try data(), result = try enumValue(CompareResult.self)
        let target: CompareTarget = switch try u8() {
        case 0: .version(try int())
        case 1: .createRevision(try int())
        case 2: .modRevision(try int())
        case 3: .value(try data())
        case 4: .lease(try int())
        case let t: throw .malformed("unknown compare target \(t)")
        }
        return Compare(key: key, rangeEnd: rangeEnd, result, target)
    }

    mutating func rangeResponse() throws(StoreError) -> RangeResponse {
        RangeResponse(revision: try int(), kvs: try kvs(), more: try bool(), count: try int())
    }

    mutating func putResponse() throws(StoreError) -> PutResponse { PutResponse(revision: try int(), prevKV: try optionalKV()) }

    mutating func deleteResponse() throws(StoreError) -> DeleteRangeResponse {
        DeleteRangeResponse(revision: try int(), deleted: try int(), prevKVs: try kvs())
    }

    mutating func event() throws(StoreError) -> WatchEvent {
        WatchEvent(kind: try enumValue(WatchEvent.Kind.self), kv: try kv(), prevKV: try optionalKV())
    }

    mutating func error() throws(StoreError) -> StoreError {
        switch try u8() {
        case 0: return .emptyKey
        case 1: return .requestTooLarge(size: Int(truncatingIfNeeded: try int()), limit: Int(truncatingIfNeeded: try int()))
        case 2: return .invalidRange
        case 3: return .compacted(try int())
        case 4: return .futureRevision(requested: try int(), current: try int())
        case 5: return .leaseNotFound(try int())
        case 6: return .leaseExists(try int())
        case 7: return .invalidTTL(try int())
        case 8: return .duplicateKey
        case 9: return .malformed(String(decoding: try data(), as: UTF8.self))
        case 10: return .noSpace
        case let t: throw .malformed("unknown error kind \(t)")
        }
    }
}

// MARK: Commands and responses

extension Command {
    /// The command's bytes for a Raft log entry.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u8(codecVersion)
        w.command(self)
        return w.bytes
    }

    /// Decodes a command; throws `StoreError.malformed` for anything but exactly one valid command.
    public init(decoding bytes: [UInt8]) throws(StoreError) {
        var r = ByteReader(bytes)
        try r.version()
        self = try r.command(allowIdentified: true)
        try r.finish()
    }
}

extension ByteWriter {
    mutating func command(_ command: Command) {
        switch command {
        case .put(let r): u8(0); put(r)
        case .deleteRange(let r): u8(1); delete(r)
        case .txn(let t):
            u8(2)
            uvarint(UInt64(t.compares.count)); for c in t.compares { compare(c) }
            uvarint(UInt64(t.success.count)); for o in t.success { op(o) }
            uvarint(UInt64(t.failure.count)); for o in t.failure { op(o) }
        case .compact(let rev): u8(3); int(rev)
        case .leaseGrant(let id, let ttl, let now): u8(4); int(id); int(ttl); int(now)
        case .leaseRevoke(let id): u8(5); int(id)
        case .leaseKeepAlive(let id, let now): u8(6); int(id); int(now)
        case .leaseRenewAll(let now): u8(7); int(now)
        case .identified(let id, let inner): u8(8); requestID(id); self.command(inner)
        case .alarm(let action, let alarm): u8(9); u8(action.rawValue); self.alarm(alarm)
        }
    }

    mutating func alarm(_ alarm: StoreAlarm) {
        u64(alarm.memberID)
        u8(alarm.kind.rawValue)
    }

    /// Fixed 16 bytes, big-endian: ids are random, so a varint would only grow them.
    mutating func requestID(_ id: RequestID) {
        u64(id.high)
        u64(id.low)
    }

    mutating func u64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
}

extension ByteReader {
    mutating func command(allowIdentified: Bool) throws(StoreError) -> Command {
        switch try u8() {
        case 0: return .put(try put())
        case 1: return .deleteRange(try delete())
        case 2:
            let compares = try list { (r: inout ByteReader) throws(StoreError) in try r.compare() }
            let success = try list { (r: inout ByteReader) throws(StoreError) in try r.op() }
            let failure = try list { (r: inout ByteReader) throws(StoreError) in try r.op() }
            return .txn(TxnRequest(compares: compares, success: success, failure: failure))
        case 3: return .compact(revision: try int())
        case 4: return .leaseGrant(id: try int(), ttl: try int(), now: try int())
        case 5: return .leaseRevoke(id: try int())
        case 6: return .leaseKeepAlive(id: try int(), now: try int())
        case 7: return .leaseRenewAll(now: try int())
        case 9: return .alarm(try enumValue(AlarmAction.self), try alarm())
        case 8 where allowIdentified:
            let id = try requestID()
            return .identified(id, try command(allowIdentified: false))
        case let t: throw .malformed("unknown command \(t)")
        }
    }

    mutating func alarm() throws(StoreError) -> StoreAlarm {
        StoreAlarm(memberID: try u64(), kind: try enumValue(AlarmKind.self))
    }

    mutating func requestID() throws(StoreError) -> RequestID {
        RequestID(high: try u64(), low: try u64())
    }

    mutating func u64() throws(StoreError) -> UInt64 {
        var v: UInt64 = 0
        for _ in 0..<8 { v = v << 8 | UInt64(try u8()) }
        return v
    }
}

extension Response {
    /// The response's bytes, as returned to the proposer through Raft.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u8(codecVersion)
        switch self {
        case .put(let r): w.u8(0); w.putResponse(r)
        case .deleteRange(let r): w.u8(1); w.deleteResponse(r)
        case .txn(let t):
            w.u8(2); w.int(t.revision); w.bool(t.succeeded)
            w.uvarint(UInt64(t.responses.count))
            for op in t.responses {
                switch op {
                case .range(let r): w.u8(0); w.rangeResponse(r)
                case .put(let r): w.u8(1); w.putResponse(r)
                case .deleteRange(let r): w.u8(2); w.deleteResponse(r)
                }
            }
        case .compact(let rev): w.u8(3); w.int(rev)
        case .leaseGrant(let rev, let id, let ttl): w.u8(4); w.int(rev); w.int(id); w.int(ttl)
        case .leaseRevoke(let rev): w.u8(5); w.int(rev)
        case .leaseKeepAlive(let rev, let id, let ttl): w.u8(6); w.int(rev); w.int(id); w.int(ttl)
        case .failure(let e): w.u8(7); w.error(e)
        case .leaseRenewAll(let rev): w.u8(8); w.int(rev)
        case .alarm(let rev, let changed):
            w.u8(9); w.int(rev)
            w.uvarint(UInt64(changed.count))
            for alarm in changed { w.alarm(alarm) }
        }
        return w.bytes
    }

    /// Decodes a response; throws `StoreError.malformed` for anything but exactly one valid response.
    public init(decoding bytes: [UInt8]) throws(StoreError) {
        var r = ByteReader(bytes)
        try r.version()
        switch try r.u8() {
        case 0: self = .put(try r.putResponse())
        case 1: self = .deleteRange(try r.deleteResponse())
        case 2:
            let revision = try r.int(), succeeded = try r.bool()
            let responses = try r.list { (r: inout ByteReader) throws(StoreError) -> ResponseOp in
                switch try r.u8() {
                case 0: return .range(try r.rangeResponse())
                case 1: return .put(try r.putResponse())
                case 2: return .deleteRange(try r.deleteResponse())
                case let t: throw .malformed("unknown txn response \(t)")
                }
            }
            self = .txn(TxnResponse(revision: revision, succeeded: succeeded, responses: responses))
        case 3: self = .compact(revision: try r.int())
        case 4: self = .leaseGrant(revision: try r.int(), id: try r.int(), ttl: try r.int())
        case 5: self = .leaseRevoke(revision: try r.int())
        case 6: self = .leaseKeepAlive(revision: try r.int(), id: try r.int(), ttl: try r.int())
        case 7: self = .failure(try r.error())
        case 8: self = .leaseRenewAll(revision: try r.int())
        case 9:
            let revision = try r.int()
            self = .alarm(revision: revision, changed: try r.list { (r: inout ByteReader) throws(StoreError) in try r.alarm() })
        case let t: throw .malformed("unknown response \(t)")
        }
        try r.finish()
    }
}
