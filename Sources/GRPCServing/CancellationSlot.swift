import GRPCCore
import Synchronization

/// Hands the transport's cancellation of a call (client reset, connection closed) to the call's
/// task-local cancellation handle, which only exists once the call's task runs: a cancellation
/// that comes first is kept and applied when the handle is attached.
///
/// A fast-path call's task is attached too and cancelled with it, as grpc-swift's executor cancels
/// a routed call's task (so `Task.sleep` and other cancellation-aware waits end as well).
final class CancellationSlot: Sendable {
    private struct State {
        var handle: ServerContext.RPCCancellationHandle?
        var task: Task<Void, Never>?
        var cancelled = false
    }

    private let state = Mutex(State())

    func attach(_ handle: ServerContext.RPCCancellationHandle) {
        let cancelNow = state.withLock { state in
            state.handle = handle
            return state.cancelled
        }
        if cancelNow { handle.cancel() }
    }

    func attach(_ task: Task<Void, Never>) {
        let cancelNow = state.withLock { state in
            state.task = task
            return state.cancelled
        }
        if cancelNow { task.cancel() }
    }

    func cancel() {
        let (handle, task) = state.withLock { state in
            state.cancelled = true
            return (state.handle, state.task)
        }
        handle?.cancel()
        task?.cancel()
    }
}
