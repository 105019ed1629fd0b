#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// The JSON shapes of etcd v3's HTTP gateway (grpc-gateway over etcdserverpb/rpc.proto and
// mvccpb/kv.proto). The gateway marshals with the proto field names (`range_end`, `prev_kv`, but
// `TTL`, `ID` and `grantedTTL` for leases, which are spelled that way in the .proto), encodes
// `bytes` as base64 and `int64` as JSON strings, and omits every field that holds its zero value.
// So every decoded field is optional and defaults to zero/false/empty.

/// An int64 as etcd's gateway writes it: a JSON string ("42"); a plain number is accepted too.
struct EtcdInt64: Codable, Sendable, Hashable {
    var value: Int64

    init(_ value: Int64) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self) {
            guard let parsed = Int64(string) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an int64: \(string)")
            }
            value = parsed
        } else {
            value = try container.decode(Int64.self)
        }
    }

    func encode(to encoder: any Encoder) throws {
        // A string, as protobuf's JSON mapping prescribes: a JSON number loses precision above 2^53
        // in some parsers, and lease ids routinely exceed that.
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// A protobuf `bytes` field: base64 in JSON.
struct EtcdBytes: Codable, Sendable, Hashable {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let string = try container.decode(String.self)
        guard let data = Data(base64Encoded: string) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not base64")
        }
        bytes = [UInt8](data)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }
}

extension Int64 {
    /// nil for zero, so the encoder leaves the field out as the gateway itself would.
    var nonZero: EtcdInt64? { self == 0 ? nil : EtcdInt64(self) }
}

extension Bool {
    var trueOrNil: Bool? { self ? true : nil }
}

extension Array where Element == UInt8 {
    var nonEmpty: EtcdBytes? { isEmpty ? nil : EtcdBytes(self) }
}

// MARK: - Requests

struct EtcdRangeRequestJSON: Encodable {
    var key: EtcdBytes
    var range_end: EtcdBytes?
    var limit: EtcdInt64?
    var revision: EtcdInt64?
    var sort_order: String?
    var sort_target: String?
    var serializable: Bool?
    var keys_only: Bool?
    var count_only: Bool?

    init(_ r: RangeRequest, serializable: Bool) {
        key = EtcdBytes(r.key)
        range_end = r.rangeEnd.nonEmpty
        limit = r.limit.nonZero
        revision = r.revision.nonZero
        sort_order = r.sortOrder == .none ? nil : r.sortOrder.etcdName
        sort_target = r.sortTarget == .key ? nil : r.sortTarget.etcdName
        self.serializable = serializable.trueOrNil
        keys_only = r.keysOnly.trueOrNil
        count_only = r.countOnly.trueOrNil
    }
}

struct EtcdPutRequestJSON: Encodable {
    var key: EtcdBytes
    var value: EtcdBytes?
    var lease: EtcdInt64?
    var prev_kv: Bool?

    init(_ r: PutRequest) {
        key = EtcdBytes(r.key)
        value = r.value.nonEmpty
        lease = r.lease.nonZero
        prev_kv = r.prevKV.trueOrNil
    }
}

struct EtcdDeleteRangeRequestJSON: Encodable {
    var key: EtcdBytes
    var range_end: EtcdBytes?
    var prev_kv: Bool?

    init(_ r: DeleteRangeRequest) {
        key = EtcdBytes(r.key)
        range_end = r.rangeEnd.nonEmpty
        prev_kv = r.prevKV.trueOrNil
    }
}

struct EtcdCompareJSON: Encodable {
    var result: String
    var target: String
    var key: EtcdBytes
    var range_end: EtcdBytes?
    var version: EtcdInt64?
    var create_revision: EtcdInt64?
    var mod_revision: EtcdInt64?
    var value: EtcdBytes?
    var lease: EtcdInt64?

    init(_ c: Compare) {
        result = c.result.etcdName
        key = EtcdBytes(c.key)
        range_end = c.rangeEnd.nonEmpty
        // The target's value goes in the field of the target's name (a proto `oneof`); it is written
        // even when zero, because "version == 0" (the key does not exist) is a common compare and
        // etcd reads an absent oneof as zero anyway.
        switch c.target {
        case .version(let v): target = "VERSION"; version = EtcdInt64(v)
        case .createRevision(let v): target = "CREATE"; create_revision = EtcdInt64(v)
        case .modRevision(let v): target = "MOD"; mod_revision = EtcdInt64(v)
        case .value(let v): target = "VALUE"; value = EtcdBytes(v)
        case .lease(let v): target = "LEASE"; lease = EtcdInt64(v)
        }
    }
}

struct EtcdRequestOpJSON: Encodable {
    var request_range: EtcdRangeRequestJSON?
    var request_put: EtcdPutRequestJSON?
    var request_delete_range: EtcdDeleteRangeRequestJSON?

    init(_ op: RequestOp) {
        switch op {
        // Reads inside a txn are always linearizable: the txn goes through consensus.
        case .range(let r): request_range = EtcdRangeRequestJSON(r, serializable: false)
        case .put(let p): request_put = EtcdPutRequestJSON(p)
        case .deleteRange(let d): request_delete_range = EtcdDeleteRangeRequestJSON(d)
        }
    }
}

struct EtcdTxnRequestJSON: Encodable {
    var compare: [EtcdCompareJSON]
    var success: [EtcdRequestOpJSON]
    var failure: [EtcdRequestOpJSON]

    init(_ t: TxnRequest) {
        compare = t.compares.map(EtcdCompareJSON.init)
        success = t.success.map(EtcdRequestOpJSON.init)
        failure = t.failure.map(EtcdRequestOpJSON.init)
    }
}

struct EtcdCompactionRequestJSON: Encodable {
    var revision: EtcdInt64
    /// Waits until the compaction is applied to the backend, so that the call returning means the
    /// same as on the built-in store.
    var physical: Bool
}

struct EtcdLeaseGrantRequestJSON: Encodable {
    var TTL: EtcdInt64
    var ID: EtcdInt64?
}

struct EtcdLeaseIDRequestJSON: Encodable {
    var ID: EtcdInt64
}

struct EtcdLeaseTimeToLiveRequestJSON: Encodable {
    var ID: EtcdInt64
    var keys: Bool
}

struct EtcdWatchCreateRequestJSON: Encodable {
    struct Create: Encodable {
        var key: EtcdBytes
        var range_end: EtcdBytes?
        var start_revision: EtcdInt64?
        var progress_notify: Bool?
        var prev_kv: Bool?
    }

    var create_request: Create
}

// MARK: - Responses

struct EtcdHeaderJSON: Decodable {
    var revision: EtcdInt64?
}

struct EtcdKeyValueJSON: Decodable {
    var key: EtcdBytes?
    var create_revision: EtcdInt64?
    var mod_revision: EtcdInt64?
    var version: EtcdInt64?
    var value: EtcdBytes?
    var lease: EtcdInt64?

    var model: KeyValue {
        KeyValue(key: key?.bytes ?? [], createRevision: create_revision?.value ?? 0,
                 modRevision: mod_revision?.value ?? 0, version: version?.value ?? 0,
                 value: value?.bytes ?? [], lease: lease?.value ?? 0)
    }
}

struct EtcdRangeResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var kvs: [EtcdKeyValueJSON]?
    var more: Bool?
    var count: EtcdInt64?

    func model(fallbackRevision: Int64 = 0) -> RangeResponse {
        RangeResponse(revision: header?.revision?.value ?? fallbackRevision, kvs: (kvs ?? []).map(\.model),
                      more: more ?? false, count: count?.value ?? 0)
    }
}

struct EtcdPutResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var prev_kv: EtcdKeyValueJSON?

    func model(fallbackRevision: Int64 = 0) -> PutResponse {
        PutResponse(revision: header?.revision?.value ?? fallbackRevision, prevKV: prev_kv?.model)
    }
}

struct EtcdDeleteRangeResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var deleted: EtcdInt64?
    var prev_kvs: [EtcdKeyValueJSON]?

    func model(fallbackRevision: Int64 = 0) -> DeleteRangeResponse {
        DeleteRangeResponse(revision: header?.revision?.value ?? fallbackRevision, deleted: deleted?.value ?? 0,
                            prevKVs: (prev_kvs ?? []).map(\.model))
    }
}

struct EtcdResponseOpJSON: Decodable {
    var response_range: EtcdRangeResponseJSON?
    var response_put: EtcdPutResponseJSON?
    var response_delete_range: EtcdDeleteRangeResponseJSON?
}

struct EtcdTxnResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var succeeded: Bool?
    var responses: [EtcdResponseOpJSON]?

    func model() throws -> TxnResponse {
        let revision = header?.revision?.value ?? 0
        let ops = try (responses ?? []).map { op -> ResponseOp in
            // Each op's own header is what etcd reports; an op whose header was left out (all zero)
            // gets the txn's revision.
            if let r = op.response_range { return .range(r.model(fallbackRevision: revision)) }
            if let p = op.response_put { return .put(p.model(fallbackRevision: revision)) }
            if let d = op.response_delete_range { return .deleteRange(d.model(fallbackRevision: revision)) }
            throw StoreError.malformed("etcd txn response op of an unknown kind")
        }
        return TxnResponse(revision: revision, succeeded: succeeded ?? false, responses: ops)
    }
}

struct EtcdLeaseGrantResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var ID: EtcdInt64?
    var TTL: EtcdInt64?
    var error: String?
}

struct EtcdLeaseKeepAliveResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var ID: EtcdInt64?
    var TTL: EtcdInt64?
}

struct EtcdLeaseTimeToLiveResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var ID: EtcdInt64?
    var TTL: EtcdInt64?
    var grantedTTL: EtcdInt64?
    var keys: [EtcdBytes]?
}

struct EtcdEventJSON: Decodable {
    /// "PUT" is the zero value and so is left out; "DELETE" is written.
    var type: String?
    var kv: EtcdKeyValueJSON?
    var prev_kv: EtcdKeyValueJSON?

    var model: WatchEvent {
        WatchEvent(kind: type == "DELETE" ? .delete : .put, kv: kv?.model ?? KeyValue(key: [], createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0),
                   prevKV: prev_kv?.model)
    }
}

struct EtcdWatchResponseJSON: Decodable {
    var header: EtcdHeaderJSON?
    var watch_id: EtcdInt64?
    var created: Bool?
    var canceled: Bool?
    var compact_revision: EtcdInt64?
    var cancel_reason: String?
    var events: [EtcdEventJSON]?
}

/// One message of a streamed reply (`/v3/watch`, `/v3/lease/keepalive`): either a result or the
/// gateway's error object.
struct EtcdStreamMessageJSON<Result: Decodable>: Decodable {
    var result: Result?
    var error: EtcdErrorJSON?
}

/// The gateway's error body: `{"error": "...", "message": "...", "code": 11}` for unary calls; in a
/// stream, `{"error": {"grpc_code": 14, "http_code": 503, "message": "...", "http_status": "..."}}`.
struct EtcdErrorJSON: Decodable {
    var message: String?
    var code: Int?

    enum CodingKeys: String, CodingKey {
        case message, code, error, grpc_code
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        message = try? container.decodeIfPresent(String.self, forKey: .message)
        if message == nil { message = try? container.decodeIfPresent(String.self, forKey: .error) }
        code = (try? container.decodeIfPresent(Int.self, forKey: .code))
            ?? (try? container.decodeIfPresent(Int.self, forKey: .grpc_code))
    }
}

// MARK: - Enum names

extension SortOrder {
    /// The proto enum value name, which the gateway accepts in JSON.
    var etcdName: String {
        switch self {
        case .none: "NONE"
        case .ascend: "ASCEND"
        case .descend: "DESCEND"
        }
    }
}

extension SortTarget {
    var etcdName: String {
        switch self {
        case .key: "KEY"
        case .version: "VERSION"
        case .create: "CREATE"
        case .mod: "MOD"
        case .value: "VALUE"
        }
    }
}

extension CompareResult {
    var etcdName: String {
        switch self {
        case .equal: "EQUAL"
        case .greater: "GREATER"
        case .less: "LESS"
        case .notEqual: "NOT_EQUAL"
        }
    }
}
