import ClusterModel
import ClusterProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging

/// Sessions with masters: join one (moving on to the next when it fails), then heartbeat, follow
/// the assignment stream and deliver reports, until the session fails.
extension WorkerAgent {
    func sessions() async throws {
        var attempt = 0
        var index = 0
        while !Task.isCancelled {
            let master = config.masters[index % config.masters.count]
            do {
                try await session(with: master)
            } catch let error as WorkerError {
                throw error
            } catch SessionEnded.fenceLifted {
                // That master answers: join it again at once for a fresh assignment set.
                attempt = 0
                continue
            } catch {
                if !Task.isCancelled {
                    logger.warning("master \(master) failed: \(error); trying the next one")
                }
            }
            index += 1
            attempt += 1
            // Backoff grows once every master has been tried, so a healthy second master is
            // reached at once while a cluster that is entirely down is not hammered.
            let round = attempt / config.masters.count
            let delay = min(config.backoffInitial * (1 << min(round, 10)), config.backoffMax)
            try await Task.sleep(for: delay * Double.random(in: 0.8...1.2))
            if attempt > 1_000_000 { attempt = config.masters.count }
        }
    }

    func session(with master: HostPort) async throws {
        let client = try clients.client(for: master)
        let stub = Orchestrator_V1_Workers.Client(wrapping: client)
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        let joined: Orchestrator_V1_JoinResponse
        let sent = ContinuousClock.now
        do {
            joined = try await stub.join(.with {
                $0.joinToken = config.joinToken
                $0.nodeID = nodeID ?? ""
                $0.hostname = config.hostname
                $0.address = advertised.description
                $0.cpuMillicores = Int64(config.capacity.cpu)
                $0.memoryMb = Int64(config.capacity.memory)
                $0.labels = config.labels
                $0.nodeCredential = nodeCredential
            }, options: options)
        } catch let error as RPCError where error.code == .permissionDenied || error.code == .invalidArgument {
            throw WorkerError.joinRefused(error.message)
        }
        if nodeID != joined.nodeID {
            nodeID = joined.nodeID
            try joined.nodeID.write(toFile: nodeIDPath, atomically: true, encoding: .utf8)
        }
        if !joined.nodeCredential.isEmpty, joined.nodeCredential != nodeCredential {
            try saveNodeCredential(joined.nodeCredential)
        }
        let credential = nodeCredential
        let id = joined.nodeID
        let interval = Duration.milliseconds(max(100, joined.heartbeatIntervalMs))
        // The join recorded a heartbeat: it renews the lease (and lifts a fence).
        told(leaseMs: joined.leaseMs, heartbeatInterval: interval)
        _ = acknowledged(sentAt: sent, rejoined: true)
        logger.notice("joined", metadata: ["node": "\(id)", "master": "\(master)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.heartbeats(stub: stub, nodeID: id, credential: credential, interval: interval) }
            group.addTask { try await self.followAssignments(stub: stub, nodeID: id, credential: credential) }
            group.addTask { try await self.deliverReports(stub: stub, nodeID: id, credential: credential) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    func heartbeats(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String, credential: String, interval: Duration) async throws {
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        while !Task.isCancelled {
            let running = supervisor.running
            // The lease counts from the send, which precedes the master's stamp (`LeaseFence`).
            let sent = ContinuousClock.now
            let reply = try await stub.heartbeat(.with {
                $0.nodeID = nodeID
                $0.nodeCredential = credential
                $0.running = running.map { r in .with { $0.taskID = r.taskID; $0.epoch = r.epoch } }
            }, options: options)
            guard reply.known else { throw SessionEnded.unknownNode }
            if acknowledged(sentAt: sent, rejoined: false) { throw SessionEnded.fenceLifted }
            try await Task.sleep(for: interval)
        }
    }

    enum SessionEnded: Error {
        case unknownNode, streamEnded
        /// A master answered a fenced worker: start over with a join and a fresh assignment set.
        case fenceLifted
    }

    func followAssignments(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String, credential: String) async throws {
        try await stub.assignments(.with { $0.nodeID = nodeID; $0.nodeCredential = credential }) { response in
            for try await set in response.messages {
                var assigned: [AssignedTask] = []
                for a in set.assignments {
                    guard let spec = try? JSONDecoder().decode(TaskSpec.self, from: a.spec) else {
                        self.logger.error("undecodable spec for task \(a.taskID); skipping it")
                        continue
                    }
                    assigned.append(AssignedTask(taskID: a.taskID, epoch: a.epoch, spec: spec, stop: a.stop))
                }
                await self.received(assigned)
            }
        }
        throw SessionEnded.streamEnded
    }

    func wakeReporter() {
        reportWaiter?.resume()
        reportWaiter = nil
    }

    func received(_ set: [AssignedTask]) {
        perform(supervisor.assignments(set))
    }

    func deliverReports(stub: Orchestrator_V1_Workers.Client<HTTP2ClientTransport.Posix>, nodeID: String, credential: String) async throws {
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        while !Task.isCancelled {
            guard let next = pendingReports.first else {
                // Cancellation must end the wait: the session ends (its master died) only once
                // all three of its tasks have returned.
                await withTaskCancellationHandler {
                    await withCheckedContinuation { reportWaiter = $0 }
                } onCancel: {
                    Task { await self.wakeReporter() }
                }
                continue
            }
            let ack = try await stub.reportStatus(.with {
                $0.nodeID = nodeID
                $0.nodeCredential = credential
                $0.taskID = next.taskID
                $0.epoch = next.epoch
                switch next.report {
                case .running:
                    $0.state = .running
                    $0.runtimeStartMs = startDurations[next.taskID] ?? 0
                case .completed: $0.state = .completed; $0.hasExitCode_p = true; $0.exitCode = 0
                case .failed(let code, let reason):
                    $0.state = .failed
                    $0.reason = reason
                    if let code { $0.hasExitCode_p = true; $0.exitCode = Int32(truncatingIfNeeded: code) }
                case .cancelled(let reason): $0.state = .cancelled; $0.reason = reason
                }
            }, options: options)
            if let first = pendingReports.first, first.taskID == next.taskID, first.epoch == next.epoch {
                pendingReports.removeFirst()
            }
            acknowledgedReport(next)
            if !ack.current { perform(supervisor.withdrawn(taskID: next.taskID, epoch: next.epoch)) }
        }
    }
}
