import AsyncHTTPClient
import Foundation
import NIOCore

/// The steps of `DockerRuntime.start` and `logs`, and the pure rules behind outcomes and names.
extension DockerRuntime {
    func createContainer(_ task: RuntimeTask) async throws -> String {
        // The operator's confinement first; the task only contributes its resource limits.
        var host = configuration.containerPolicy.hostConfig
        if task.cpuMillicores > 0 {
            host.nanoCpus = Int64(try await clampedMillicores(task.cpuMillicores)) * 1_000_000
        }
        if task.memoryMB > 0 {
            host.memory = Int64(task.memoryMB) * 1024 * 1024
            host.memorySwap = host.memory
        }
        let body = DockerCreateContainer(
            image: task.image,
            cmd: task.command.isEmpty ? nil : task.command,
            env: task.env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            labels: [RuntimeLabel.taskID: task.taskID, RuntimeLabel.epoch: String(task.epoch),
                     RuntimeLabel.owner: owner, RuntimeLabel.taskName: task.name],
            hostConfig: host)
        let name = Self.containerName(owner: owner, taskID: task.taskID, epoch: task.epoch)
        let operation = "create container for \(task.taskID)"
        let response = try await call(.post, "/containers/create", query: [("name", name)], json: body, operation: operation)
        switch response.status {
        case 201:
            return try response.decode(DockerCreated.self, operation: operation).id
        case 404:
            throw RuntimeError.imageNotFound(image: task.image, message: response.message)
        case 409:
            throw RuntimeError.alreadyExists(taskID: task.taskID, epoch: task.epoch)
        case 400:
            // Docker's validation: "No command specified", "Minimum memory limit allowed is 6MB", ...
            throw RuntimeError.invalidSpec(taskID: task.taskID, message: response.message)
        default:
            throw RuntimeError.docker(operation: operation, status: response.status, message: response.message)
        }
    }

    /// Docker refuses NanoCpus under 0.01 core or above the host's CPUs: a worker that advertises
    /// more than the host has still runs the task, at the host's full width.
    func clampedMillicores(_ millicores: Int) async throws -> Int {
        var cpus = state.withLock { $0.hostCPUs }
        if cpus == nil { cpus = try await hostCapacity().cpu / 1000 }
        return min(max(millicores, 10), max(1, cpus ?? 1) * 1000)
    }

    /// What the Docker host offers (`GET /info`: `NCPU`, `MemTotal`), in millicores and megabytes.
    /// A worker in a container starts its tasks as sibling containers on the host, so its default
    /// capacity is the host's, not its own cgroup's.
    public func hostCapacity() async throws -> (cpu: Int, memory: Int) {
        struct Info: Decodable { var NCPU: Int; var MemTotal: Int64 }
        let response = try await call(.get, "/info", operation: "info")
        guard response.status == 200 else {
            throw RuntimeError.docker(operation: "info", status: response.status, message: response.message)
        }
        let info = try response.decode(Info.self, operation: "info")
        state.withLock { $0.hostCPUs = info.NCPU }
        return (max(1, info.NCPU) * 1000, max(1, Int(info.MemTotal / 1_048_576)))
    }

    /// Makes sure `image` is present, pulling it when it is not.
    func ensureImage(_ image: String) async throws {
        let path = "/images/\(DockerAPI.encodeImagePath(image))/json"
        let present = try await call(.get, path, operation: "inspect image \(image)")
        if present.status == 200 { return }
        guard present.status == 404 else {
            throw RuntimeError.docker(operation: "inspect image \(image)", status: present.status, message: present.message)
        }
        try await pull(image)
        let after = try await call(.get, path, operation: "inspect image \(image)")
        guard after.status == 200 else {
            throw RuntimeError.imageNotFound(image: image, message: "the pull ended but the image is not present (\(after.message))")
        }
    }

    func pull(_ image: String) async throws {
        var query = [("fromImage", image)]
        // Without a tag (or digest) Docker would pull every tag of the repository.
        let lastComponent = image.split(separator: "/").last ?? ""
        if !image.contains("@"), !lastComponent.contains(":") { query.append(("tag", "latest")) }
        let request = try api.request(.post, "/images/create", query: query)
        let timeout = configuration.pullTimeout
        do {
            try await api.stream(request, operation: "pull \(image)", deadline: .now() + timeout.timeAmount,
                                 timeout: timeout) { status, body in
                var text = ByteBuffer()
                for try await chunk in body {
                    var chunk = chunk
                    // Progress lines only matter for their errors; keep the tail to find them.
                    text.writeBuffer(&chunk)
                    if text.readableBytes > 1 << 16 { text.moveReaderIndex(forwardBy: text.readableBytes - (1 << 15)) }
                }
                let answer = DockerAPI.Response(status: status, body: text)
                guard status == 200 else { throw RuntimeError.imageNotFound(image: image, message: answer.message) }
                for line in String(buffer: text).split(separator: "\n") {
                    guard let progress = try? JSONDecoder().decode(DockerPullProgress.self, from: Data(line.utf8)) else { continue }
                    if let message = progress.errorDetail?.message ?? progress.error {
                        throw RuntimeError.imageNotFound(image: image, message: message)
                    }
                }
            }
        } catch RuntimeError.timedOut {
            throw RuntimeError.imageNotFound(image: image, message: "the pull did not finish within \(timeout)")
        }
    }

    func fetchLogs(_ id: String, taskID: String, lines: Int?, limit: Int) async throws -> (TailBuffer, Int) {
        let query = [("stdout", "1"), ("stderr", "1"), ("tail", lines.map(String.init) ?? "all")]
        let request = try api.request(.get, "/containers/\(id)/logs", query: query)
        let timeout = configuration.requestTimeout
        return try await api.stream(request, operation: "logs of \(taskID)", deadline: .now() + timeout.timeAmount,
                                    timeout: timeout) { status, body in
            if status != 200 {
                let answer = DockerAPI.Response(status: status, body: try await body.collect(upTo: 1 << 16))
                if status == 404 { throw ContainerGone() }
                throw RuntimeError.docker(operation: "logs of \(taskID)", status: status, message: answer.message)
            }
            var demuxer = DockerLogDemuxer()
            var tail = TailBuffer(capacity: limit)
            for try await chunk in body {
                demuxer.feed(chunk.readableBytesView) { tail.append(contentsOf: $0) }
            }
            try Task.checkCancellation()
            return (tail, demuxer.frames)
        }
    }

    // MARK: - Pure helpers

    static func isRunning(_ status: String) -> Bool {
        status == "running" || status == "paused" || status == "restarting" || status == "removing"
    }

    static func outcome(of info: DockerContainerInspect) -> TaskOutcome {
        let code = clamp(info.state.exitCode)
        if info.name == "/" + cancelledName(of: info) { return .cancelled }
        switch info.state.status {
        case "created":
            return .failed(reason: .runtimeError, message: "the container was created but never started"
                + (info.state.error.map { ": \($0)" } ?? ""))
        case "dead":
            return .failed(reason: .runtimeError, message: "Docker marks the container dead: \(info.state.error ?? "no detail")")
        default:
            break
        }
        // Docker flags any OOM kill in the container; a task whose main process still exited 0
        // (it survived losing a child) did its job.
        if info.state.oomKilled, code != 0 { return .oomKilled(code: code) }
        if let error = info.state.error, !error.isEmpty {
            return .failed(reason: .runtimeError, message: error)
        }
        return .exited(code: code)
    }

    static func clamp(_ code: Int64) -> Int32 { Int32(clamping: code) }

    /// `orch-<owner>-<task id>-<epoch>`, with characters Docker refuses in names replaced by `_`.
    static func containerName(owner: String, taskID: String, epoch: UInt64) -> String {
        func clean(_ s: String) -> String {
            String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) ? $0 : "_" })
        }
        return "orch-\(clean(owner))-\(clean(taskID))-\(epoch)"
    }

    static func cancelledName(of info: DockerContainerInspect) -> String {
        let labels = info.config.labels ?? [:]
        let epoch = labels[RuntimeLabel.epoch].flatMap { UInt64($0) } ?? 0
        return containerName(owner: labels[RuntimeLabel.owner] ?? "", taskID: labels[RuntimeLabel.taskID] ?? "", epoch: epoch)
            + "-cancelled"
    }

    /// Docker's stop takes whole seconds; round up so the task gets at least its grace.
    static func wholeSeconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return attoseconds > 0 ? seconds + 1 : seconds
    }

    static func startError(_ task: RuntimeTask, status: Int, message: String) -> RuntimeError {
        // The command is at fault when the runtime cannot exec it.
        let lowered = message.lowercased()
        if lowered.contains("executable file not found") || lowered.contains("no such file or directory")
            || lowered.contains("permission denied") || lowered.contains("exec format error") {
            return .invalidSpec(taskID: task.taskID, message: message)
        }
        return .docker(operation: "start \(task.taskID)", status: status, message: message)
    }
}

extension Duration {
    /// The same span as NIO's `TimeAmount` (nanoseconds, saturating).
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(seconds < 0 ? .min : .max) }
        return .nanoseconds(nanos.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
