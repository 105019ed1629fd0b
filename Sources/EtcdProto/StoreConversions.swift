import Foundation
import Store

// Conversions between etcd's wire messages (etcdserverpb, mvccpb) and the Store module's types,
// which follow etcd's names and semantics one to one. Both directions live here because both ends
// use them: the etcd API our masters serve (EtcdAPI: wire requests in, store responses out) and
// `EtcdStore` talking to a real etcd (EtcdBackend: store requests out, wire responses in).
//
// Only total conversions are here. Refusing wire requests the store cannot express (nested txns,
// unknown enum values) is the server's business and stays in EtcdAPI with its error type.

// MARK: - Store → wire

extension Mvccpb_KeyValue {
    /// The wire form of a key's state.
    public init(_ kv: KeyValue) {
        self.init()
        key = Data(kv.key)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        value = Data(kv.value)
        lease = kv.lease
    }
}

extension Mvccpb_Event {
    /// The wire form of a watch event.
    public init(_ e: WatchEvent) {
        self.init()
        type = e.kind == .put ? .put : .delete
        kv = Mvccpb_KeyValue(e.kv)
        if let prev = e.prevKV { prevKv = Mvccpb_KeyValue(prev) }
    }
}

extension Etcdserverpb_RangeResponse {
    /// The wire form of a range answer under `header`.
    public init(_ r: RangeResponse, header: Etcdserverpb_ResponseHeader) {
        self.init()
        self.header = header
        kvs = r.kvs.map(Mvccpb_KeyValue.init)
        more = r.more
        count = r.count
    }
}

extension Etcdserverpb_PutResponse {
    /// The wire form of a put answer under `header`.
    public init(_ r: PutResponse, header: Etcdserverpb_ResponseHeader) {
        self.init()
        self.header = header
        if let prev = r.prevKV { prevKv = Mvccpb_KeyValue(prev) }
    }
}

extension Etcdserverpb_DeleteRangeResponse {
    /// The wire form of a delete answer under `header`.
    public init(_ r: DeleteRangeResponse, header: Etcdserverpb_ResponseHeader) {
        self.init()
        self.header = header
        deleted = r.deleted
        prevKvs = r.prevKVs.map(Mvccpb_KeyValue.init)
    }
}

extension Etcdserverpb_TxnResponse {
    /// The wire form of a txn answer: each op's header is `header` with the op's own revision.
    public init(_ r: TxnResponse, header: Etcdserverpb_ResponseHeader) {
        self.init()
        self.header = header
        succeeded = r.succeeded
        responses = r.responses.map { op in
            var h = header
            var response = Etcdserverpb_ResponseOp()
            switch op {
            case .range(let x):
                h.revision = x.revision
                response.responseRange = Etcdserverpb_RangeResponse(x, header: h)
            case .put(let x):
                h.revision = x.revision
                response.responsePut = Etcdserverpb_PutResponse(x, header: h)
            case .deleteRange(let x):
                h.revision = x.revision
                response.responseDeleteRange = Etcdserverpb_DeleteRangeResponse(x, header: h)
            }
            return response
        }
    }
}

extension Etcdserverpb_RangeRequest {
    /// The wire form of a range read; `serializable` lets any member answer from its local state.
    public init(_ r: RangeRequest, serializable: Bool) {
        self.init()
        key = Data(r.key)
        rangeEnd = Data(r.rangeEnd)
        limit = r.limit
        revision = r.revision
        // The store's enums carry etcd's numbers.
        sortOrder = Etcdserverpb_RangeRequest.SortOrder(rawValue: Int(r.sortOrder.rawValue)) ?? .none
        sortTarget = Etcdserverpb_RangeRequest.SortTarget(rawValue: Int(r.sortTarget.rawValue)) ?? .key
        self.serializable = serializable
        keysOnly = r.keysOnly
        countOnly = r.countOnly
    }
}

extension Etcdserverpb_PutRequest {
    /// The wire form of a put.
    public init(_ r: PutRequest) {
        self.init()
        key = Data(r.key)
        value = Data(r.value)
        lease = r.lease
        prevKv = r.prevKV
    }
}

extension Etcdserverpb_DeleteRangeRequest {
    /// The wire form of a delete.
    public init(_ r: DeleteRangeRequest) {
        self.init()
        key = Data(r.key)
        rangeEnd = Data(r.rangeEnd)
        prevKv = r.prevKV
    }
}

extension Etcdserverpb_Compare {
    /// The wire form of a txn compare: the operand goes in the union member the target names.
    public init(_ c: Compare) {
        self.init()
        key = Data(c.key)
        rangeEnd = Data(c.rangeEnd)
        switch c.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        }
        switch c.target {
        case .version(let v): target = .version; version = v
        case .createRevision(let v): target = .create; createRevision = v
        case .modRevision(let v): target = .mod; modRevision = v
        case .value(let v): target = .value; value = Data(v)
        case .lease(let v): target = .lease; lease = v
        }
    }
}

extension Etcdserverpb_RequestOp {
    /// The wire form of one txn operation. Reads inside a txn go through consensus with the txn,
    /// so they are never serializable.
    public init(_ op: RequestOp) {
        self.init()
        switch op {
        case .range(let r): requestRange = Etcdserverpb_RangeRequest(r, serializable: false)
        case .put(let p): requestPut = Etcdserverpb_PutRequest(p)
        case .deleteRange(let d): requestDeleteRange = Etcdserverpb_DeleteRangeRequest(d)
        }
    }
}

extension Etcdserverpb_TxnRequest {
    /// The wire form of a txn.
    public init(_ t: TxnRequest) {
        self.init()
        compare = t.compares.map(Etcdserverpb_Compare.init)
        success = t.success.map(Etcdserverpb_RequestOp.init)
        failure = t.failure.map(Etcdserverpb_RequestOp.init)
    }
}

// MARK: - Wire → Store

extension KeyValue {
    /// A key's state from its wire form.
    public init(_ kv: Mvccpb_KeyValue) {
        self.init(key: [UInt8](kv.key), createRevision: kv.createRevision, modRevision: kv.modRevision,
                  version: kv.version, value: [UInt8](kv.value), lease: kv.lease)
    }
}

extension WatchEvent {
    /// A watch event from its wire form.
    public init(_ e: Mvccpb_Event) {
        self.init(kind: e.type == .delete ? .delete : .put, kv: KeyValue(e.kv),
                  prevKV: e.hasPrevKv ? KeyValue(e.prevKv) : nil)
    }
}

extension RangeResponse {
    /// A range answer from its wire form.
    public init(_ r: Etcdserverpb_RangeResponse) {
        self.init(revision: r.header.revision, kvs: r.kvs.map(KeyValue.init), more: r.more, count: r.count)
    }
}

extension PutResponse {
    /// A put answer from its wire form.
    public init(_ r: Etcdserverpb_PutResponse) {
        self.init(revision: r.header.revision, prevKV: r.hasPrevKv ? KeyValue(r.prevKv) : nil)
    }
}

extension DeleteRangeResponse {
    /// A delete answer from its wire form.
    public init(_ r: Etcdserverpb_DeleteRangeResponse) {
        self.init(revision: r.header.revision, deleted: r.deleted, prevKVs: r.prevKvs.map(KeyValue.init))
    }
}

extension TxnResponse {
    /// A txn answer from its wire form; an op of a kind the store does not know (a nested txn,
    /// which the store never sends) is malformed.
    public init(_ r: Etcdserverpb_TxnResponse) throws(StoreError) {
        let revision = r.header.revision
        // etcd fills in each op's own header, but an op whose header is left empty (revision 0)
        // happened at the txn's revision.
        func at<T>(_ value: T, _ keyPath: WritableKeyPath<T, Int64>) -> T {
            var out = value
            if out[keyPath: keyPath] == 0 { out[keyPath: keyPath] = revision }
            return out
        }
        var ops: [ResponseOp] = []
        ops.reserveCapacity(r.responses.count)
        for op in r.responses {
            switch op.response {
            case .responseRange(let x): ops.append(.range(at(RangeResponse(x), \.revision)))
            case .responsePut(let x): ops.append(.put(at(PutResponse(x), \.revision)))
            case .responseDeleteRange(let x): ops.append(.deleteRange(at(DeleteRangeResponse(x), \.revision)))
            case .responseTxn, nil: throw .malformed("etcd txn response op of an unknown kind")
            }
        }
        self.init(revision: r.header.revision, succeeded: r.succeeded, responses: ops)
    }
}
