import GRPCCore
import NIOCore
import NIOHTTP2
import Synchronization

/// Carries response parts from any task to the connection's event loop: writes queue under a lock
/// and one scheduled drain writes them all and flushes once, so the three parts of a unary answer
/// (and the answers of calls finishing together) cost one hop and one `writev`.
final class Outbox: Sendable {
    /// The outcome of a unary call on the fast path.
    enum Answer {
        case response([UInt8])
        case failure(Status, Metadata)
    }

    private enum Item {
        case part(HTTP2StreamID, RPCResponsePart<[UInt8]>)
        case answer(HTTP2StreamID, Answer)
        case windowUpdate(HTTP2StreamID, Int)
    }

    private struct State {
        var items: [Item] = []
        var scheduled = false
        var handler: NIOLoopBound<GRPCFrameHandler>?
    }

    private let state: Mutex<State>
    private let eventLoop: any EventLoop

    init(handler: NIOLoopBound<GRPCFrameHandler>, eventLoop: any EventLoop) {
        self.state = Mutex(State(handler: handler))
        self.eventLoop = eventLoop
    }

    /// Queues a part; false when the connection is gone.
    func send(_ part: RPCResponsePart<[UInt8]>, on id: HTTP2StreamID) -> Bool {
        enqueue(.part(id, part))
    }

    func replenish(_ id: HTTP2StreamID, by bytes: Int) {
        _ = enqueue(.windowUpdate(id, bytes))
    }

    /// Queues a unary call's whole answer (head, message and trailers, or trailers only).
    func answer(_ answer: Answer, on id: HTTP2StreamID) {
        _ = enqueue(.answer(id, answer))
    }

    private func enqueue(_ item: Item) -> Bool {
        let (open, schedule) = state.withLock { state -> (Bool, Bool) in
            guard state.handler != nil else { return (false, false) }
            state.items.append(item)
            defer { state.scheduled = true }
            return (true, !state.scheduled)
        }
        if schedule { eventLoop.execute { self.drain() } }
        return open
    }

    private func drain() {
        let (items, handler) = state.withLock { state in
            defer { state.items = []; state.scheduled = false }
            return (state.items, state.handler)
        }
        guard let handler = handler?.value else { return }
        for item in items {
            switch item {
            case .part(let id, let part): handler.respond(id, with: part, counted: true)
            case .answer(let id, .response(let bytes)):
                handler.respond(id, with: .message(bytes))
                handler.respond(id, with: .status(Status(code: .ok, message: ""), [:]))
            case .answer(let id, .failure(let status, let metadata)): handler.respond(id, with: .status(status, metadata))
            case .windowUpdate(let id, let bytes): handler.replenish(id, by: bytes)
            }
        }
        handler.flush()
    }

    /// The connection closed: later parts are refused (the handler reference is dropped, which
    /// also breaks the handler -> outbox -> handler cycle).
    func close() {
        state.withLock { state in
            state.handler = nil
            state.items = []
        }
    }
}
