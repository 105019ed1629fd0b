import Raft
import Store
import Synchronization

/// Group commit across the hop to the leader: a follower's concurrent writes share calls.
///
/// A command is sent at once while fewer than `maxInFlight` calls are out; otherwise it waits and
/// goes with every command queued behind the same call, in the next call its chain makes. One
/// client's writes therefore pay no added wait, and 64 clients' writes cost a few calls per round
/// trip instead of 64 (each call costs both masters a gRPC stream, a task and an executor hop,
/// which under load was most of the price of a forwarded write). etcd's followers get the same
/// effect by forwarding proposals as Raft messages, batched on the peer stream.
final class ForwardBatcher: Sendable {
    /// Sends commands in one call and answers each, in order (a failed call fails each).
    typealias Send = @Sendable ([EncodedCommand]) async -> [Result<Response, any Error>]

    /// A command and its encoding, made once: its size decides the batch it fits in.
    struct EncodedCommand: Sendable {
        let command: Command
        let bytes: [UInt8]
    }

    private struct Waiting {
        let command: EncodedCommand
        let continuation: CheckedContinuation<Response, any Error>
    }

    private struct State {
        var queued: [Waiting] = []
        var inFlight = 0
    }

    /// Calls out at once; more queue behind them.
    let maxInFlight: Int
    /// Commands per call, and their bytes (a single larger command still goes, alone).
    let maxCommands: Int
    let maxBytes: Int
    /// The default of `maxCommands` (etcd's `--max-txn-ops`, as a transaction's operations).
    static let defaultMaxCommands = 128
    private let send: Send
    private let state = Mutex(State())

    init(maxInFlight: Int = 4, maxCommands: Int = defaultMaxCommands, maxBytes: Int = 1 << 20, send: @escaping Send) {
        self.maxInFlight = max(1, maxInFlight)
        self.maxCommands = max(1, maxCommands)
        self.maxBytes = maxBytes
        self.send = send
    }

    /// Forwards `command` and returns its response.
    func forward(_ command: Command) async throws -> Response {
        let encoded = EncodedCommand(command: command, bytes: command.encoded())
        return try await withCheckedThrowingContinuation { continuation in
            let batch: [Waiting]? = state.withLock { s in
                s.queued.append(Waiting(command: encoded, continuation: continuation))
                guard s.inFlight < maxInFlight else { return nil }
                s.inFlight += 1
                return take(&s)
            }
            if let batch { Task { await self.drain(startingWith: batch) } }
        }
    }

    /// Sends `batch`, then whatever queued meanwhile, until nothing is queued: one chain of calls,
    /// holding one of the `maxInFlight` slots.
    private func drain(startingWith batch: [Waiting]) async {
        var batch = batch
        while true {
            let results = await send(batch.map(\.command))
            for (i, waiting) in batch.enumerated() {
                waiting.continuation.resume(with: i < results.count ? results[i] : .failure(RaftNodeError.timeout))
            }
            let next: [Waiting]? = state.withLock { s in
                if s.queued.isEmpty {
                    s.inFlight -= 1
                    return nil
                }
                return take(&s)
            }
            guard let next else { return }
            batch = next
        }
    }

    /// The oldest queued commands that fit in one call (at least one).
    private func take(_ s: inout State) -> [Waiting] {
        var count = 0, bytes = 0
        for waiting in s.queued {
            if count == maxCommands || (count > 0 && bytes + waiting.command.bytes.count > maxBytes) { break }
            count += 1
            bytes += waiting.command.bytes.count
        }
        let batch = Array(s.queued.prefix(count))
        s.queued.removeFirst(count)
        return batch
    }
}
