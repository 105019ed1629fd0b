// The list probe of the scale run (issue 19): `GET /api/v1/tasks?limit=500` on one master, one request
// after another, timed to the body's last byte.
//
// It runs on a thread of its own with a blocking keep-alive socket, as a separate client process
// would, and does not parse the body. The first version ran on the bench's cooperative pool beside
// the 5,000 simulated nodes' streams and parsed each 500-task page with JSONSerialization before
// stopping its clock: it timed the bench's own queue and parser as much as the master.
import Foundation
import RaftTestSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Times one request path on one master until stopped; `stop()` returns the latencies (ms, sorted).
final class ListProbe: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let result = Mutex<[Double]?>(nil)
    private let finished = DispatchSemaphore(value: 0)

    init(port: Int, path: String = "/api/v1/tasks?limit=500") {
        let thread = Thread { [self] in
            var latencies: [Double] = []
            var connection: BlockingHTTPConnection?
            while !stopped.load(ordering: .relaxed) {
                do {
                    if connection == nil { connection = try BlockingHTTPConnection(port: port) }
                    let began = ContinuousClock.now
                    let status = try connection?.get(path) ?? 0
                    let elapsed = began.duration(to: .now)
                    if status == 200 {
                        latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                    }
                } catch {
                    connection = nil  // a refused or closed connection: open another
                    usleep(10_000)
                }
            }
            result.withLock { $0 = latencies.sorted() }
            finished.signal()
        }
        thread.start()
    }

    func stop() -> [Double] {
        stopped.store(true, ordering: .relaxed)
        finished.wait()
        return result.withLock { $0 ?? [] }
    }
}

/// HTTP/1.1 over one blocking loopback socket: enough for GET with a Content-Length or chunked answer.
final class BlockingHTTPConnection {
    struct Failure: Error { var what: String }
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(what: "socket") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connected = LoopbackAddress.with(port: port) { connect(fd, $0, $1) }
        guard connected == 0 else { close(fd); throw Failure(what: "connect") }
    }

    deinit { close(fd) }

    /// Sends a GET and reads the whole answer; returns its status.
    func get(_ path: String) throws -> Int {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(what: "send") }
            sent += n
        }
        let headEnd = try readUntil(Array("\r\n\r\n".utf8))
        let head = String(decoding: buffer[..<headEnd], as: UTF8.self).lowercased()
        buffer.removeFirst(headEnd + 4)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
              let status = Int(statusLine.split(separator: " ")[1]) else { throw Failure(what: "status line") }
        if let length = lines.first(where: { $0.hasPrefix("content-length:") })
            .flatMap({ Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }) {
            try fill(length)
            buffer.removeFirst(length)
        } else if lines.contains(where: { $0.hasPrefix("transfer-encoding:") && $0.contains("chunked") }) {
            while true {
                let sizeEnd = try readUntil(Array("\r\n".utf8))
                guard let size = Int(String(decoding: buffer[..<sizeEnd], as: UTF8.self), radix: 16) else { throw Failure(what: "chunk size") }
                try fill(sizeEnd + 2 + size + 2)
                buffer.removeFirst(sizeEnd + 2 + size + 2)
                if size == 0 { break }
            }
        } else {
            throw Failure(what: "an answer without a length")
        }
        return status
    }

    /// Reads until `marker` is buffered; returns where it starts.
    private func readUntil(_ marker: [UInt8]) throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= marker.count {
                for i in searchFrom...(buffer.count - marker.count) where buffer[i] == marker[0] && Array(buffer[i..<(i + marker.count)]) == marker {
                    return i
                }
                searchFrom = buffer.count - marker.count + 1
            }
            try receive()
        }
    }

    private func fill(_ count: Int) throws {
        while buffer.count < count { try receive() }
    }

    private func receive() throws {
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw Failure(what: "connection closed") }
        buffer.append(contentsOf: chunk[..<n])
    }
}
