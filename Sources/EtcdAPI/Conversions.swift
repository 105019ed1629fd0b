import EtcdProto
import Foundation
import Store

/// Wire requests to the Store module's requests, for the server. Requests that the store cannot
/// express (nested txns, unknown enum values) are refused here with an `EtcdAPIError`, before the
/// store sees them. The total conversions (store answers to wire answers) are in EtcdProto.
enum Convert {
    static let maxTxnOps = 128

    // MARK: Requests

    static func range(_ r: Etcdserverpb_RangeRequest) throws(EtcdAPIError) -> RangeRequest {
        guard let order = SortOrder(rawValue: UInt8(clamping: r.sortOrder.rawValue)),
              let target = SortTarget(rawValue: UInt8(clamping: r.sortTarget.rawValue)),
              r.sortOrder.rawValue >= 0, r.sortTarget.rawValue >= 0
        else { throw .invalidSortOption }
        return RangeRequest(key: [UInt8](r.key), rangeEnd: [UInt8](r.rangeEnd), revision: r.revision,
                            limit: r.limit, countOnly: r.countOnly, keysOnly: r.keysOnly,
                            sortOrder: order, sortTarget: target)
    }

    /// Whether a range asks for etcd's revision filters, which the store does not apply itself.
    static func hasRevisionFilters(_ r: Etcdserverpb_RangeRequest) -> Bool {
        r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0 || r.maxCreateRevision != 0
    }

    /// Applies etcd's min/max mod/create revision filters to a range read without a limit, then
    /// the limit, as etcd's apply does (`count` stays the number of keys in the range).
    static func filter(_ response: RangeResponse, _ r: Etcdserverpb_RangeRequest) -> RangeResponse {
        var out = response
        out.kvs = response.kvs.filter { kv in
            (r.minModRevision == 0 || kv.modRevision >= r.minModRevision)
                && (r.maxModRevision == 0 || kv.modRevision <= r.maxModRevision)
                && (r.minCreateRevision == 0 || kv.createRevision >= r.minCreateRevision)
                && (r.maxCreateRevision == 0 || kv.createRevision <= r.maxCreateRevision)
        }
        if r.limit > 0 && out.kvs.count > r.limit {
            out.kvs.removeLast(out.kvs.count - Int(r.limit))
            out.more = true
        }
        return out
    }

    static func put(_ r: Etcdserverpb_PutRequest) -> PutRequest {
        PutRequest(key: [UInt8](r.key), value: [UInt8](r.value), lease: r.lease, prevKV: r.prevKv)
    }

    static func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest) -> DeleteRangeRequest {
        DeleteRangeRequest(key: [UInt8](r.key), rangeEnd: [UInt8](r.rangeEnd), prevKV: r.prevKv)
    }

    static func txn(_ r: Etcdserverpb_TxnRequest) throws(EtcdAPIError) -> TxnRequest {
        if r.success.count > maxTxnOps || r.failure.count > maxTxnOps { throw .tooManyOperations(limit: maxTxnOps) }
        var compares: [Compare] = []
        for c in r.compare { compares.append(try compare(c)) }
        var success: [RequestOp] = []
        for op in r.success { success.append(try requestOp(op)) }
        var failure: [RequestOp] = []
        for op in r.failure { failure.append(try requestOp(op)) }
        return TxnRequest(compares: compares, success: success, failure: failure)
    }

    static func compare(_ c: Etcdserverpb_Compare) throws(EtcdAPIError) -> Compare {
        let result: CompareResult
        switch c.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        case .UNRECOGNIZED: throw .store(.malformed("unknown compare result \(c.result.rawValue)"))
        }
        // As etcd, the operand is read from the union member the target names (absent: zero).
        let target: CompareTarget
        switch c.target {
        case .version: target = .version(c.version)
        case .create: target = .createRevision(c.createRevision)
        case .mod: target = .modRevision(c.modRevision)
        case .value: target = .value([UInt8](c.value))
        case .lease: target = .lease(c.lease)
        case .UNRECOGNIZED: throw .store(.malformed("unknown compare target \(c.target.rawValue)"))
        }
        return Compare(key: [UInt8](c.key), rangeEnd: [UInt8](c.rangeEnd), result, target)
    }

    static func requestOp(_ op: Etcdserverpb_RequestOp) throws(EtcdAPIError) -> RequestOp {
        switch op.request {
        case .requestRange(let r): return .range(try range(r))
        case .requestPut(let p):
            if p.ignoreValue || p.ignoreLease {
                throw .unimplemented(method: "ignore_value/ignore_lease inside a txn", reason: "use them on a plain put")
            }
            return .put(put(p))
        case .requestDeleteRange(let d): return .deleteRange(deleteRange(d))
        case .requestTxn: throw .nestedTxn
        case nil: throw .store(.malformed("txn operation without a request"))
        }
    }
}
