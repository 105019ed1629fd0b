import ClusterModel
import Foundation
import Logging

/// Carrying out the supervisor's actions: starts and removals chained per task, stops at once,
/// reports saved and queued for the session's reporter.
extension WorkerAgent {
    func perform(_ actions: [SupervisorAction]) {
        // Reports first: a final report is on disk before the removal of its copy is even
        // scheduled (a removal may begin at once, off this actor), so a crash in between can
        // neither lose the ending nor let the copy run again.
        var keep: Set<String> = []
        for case .report(let taskID, let epoch, let report) in actions {
            if !queue(report, taskID: taskID, epoch: epoch) { keep.insert(taskID) }
        }
        for action in actions {
            switch action {
            case .start(let task):
                chain(task.taskID) { await self.start(task) }
            case .stop(let taskID, let epoch):
                stop(taskID: taskID, epoch: epoch, grace: config.stopGrace)
            case .fence(let taskID, let epoch):
                stop(taskID: taskID, epoch: epoch, grace: fenceGrace)
            case .remove(let taskID) where keep.contains(taskID):
                logger.warning("keeping what is left of task \(taskID) until a master acknowledges its report, which could not be saved")
            case .remove(let taskID):
                chain(taskID) {
                    // Keep the output of finished tasks (GET /api/v1/tasks/{id}/logs) after their
                    // container or process files are gone.
                    let kept = LogFrameBuffer(limit: defaultLogLimit)
                    do {
                        _ = try await self.runtime.readLogs(taskID: taskID, query: LogQuery(limitBytes: defaultLogLimit),
                                                            emit: { await kept.add($0) })
                        self.finishedLogs.store(taskID: taskID, frames: await kept.frames)
                    } catch {
                        self.logger.debug("the output of task \(taskID) could not be kept: \(error)")
                    }
                    try? await self.runtime.remove(taskID: taskID)
                }
            case .report:
                break  // queued above
            }
        }
    }

    /// Not chained behind a start still in progress: a stop must not wait for an image pull. The
    /// runtime stops whatever copy of the task exists; a copy it does not have yet is stopped
    /// again when its start completes (`Supervisor.started`).
    func stop(taskID: String, epoch: UInt64, grace: Duration) {
        Task {
            do {
                try await self.runtime.stop(taskID: taskID, grace: grace)
            } catch {
                self.logger.warning("stopping task \(taskID) (epoch \(epoch)) failed: \(error)")
            }
        }
    }

    func chain(_ taskID: String, _ operation: @escaping @Sendable () async -> Void) {
        let previous = chains[taskID]?.task
        chainTokens += 1
        let token = chainTokens
        chains[taskID] = (token, Task {
            await previous?.value
            await operation()
            await self.chainFinished(taskID, token: token)
        })
    }

    func chainFinished(_ taskID: String, token: UInt64) {
        if chains[taskID]?.token == token { chains[taskID] = nil }
    }

    func start(_ task: AssignedTask) async {
        let began = ContinuousClock.now
        do {
            try await runtime.start(task.runtimeTask)
            startDurations[task.taskID] = began.duration(to: .now).wholeMilliseconds
        } catch {
            logger.warning("task \(task.taskID) did not start: \(error)")
            perform(supervisor.ended(taskID: task.taskID, epoch: task.epoch, outcome: Self.outcome(ofStartError: error)))
            return
        }
        perform(supervisor.started(taskID: task.taskID, epoch: task.epoch))
        watch(taskID: task.taskID, epoch: task.epoch)
    }

    /// Waits for a copy to end, in the background.
    func watch(taskID: String, epoch: UInt64) {
        Task {
            let outcome: TaskOutcome
            do {
                outcome = try await runtime.wait(taskID: taskID)
            } catch {
                outcome = .failed(reason: .runtimeError, message: "lost track of the task: \(error)")
            }
            await self.ended(taskID: taskID, epoch: epoch, outcome: outcome)
        }
    }

    func ended(taskID: String, epoch: UInt64, outcome: TaskOutcome) {
        startDurations[taskID] = nil
        perform(supervisor.ended(taskID: taskID, epoch: epoch, outcome: outcome))
    }

    static func outcome(ofStartError error: any Error) -> TaskOutcome {
        (error as? RuntimeError)?.outcome ?? .failed(reason: .runtimeError, message: "\(error)")
    }
}
