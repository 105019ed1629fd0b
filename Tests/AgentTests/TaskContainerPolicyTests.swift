@testable import Agent
import Foundation
import Testing
import TestGate

/// What confines a task container (the security review's finding 5), as Docker shows it.
@Suite("Task container confinement", .serialized, .heavy, .enabled(if: DockerTestEnvironment.enabled, DockerTestEnvironment.skipComment))
struct TaskContainerConfinementTests {
    @Test("a task container: no new privileges, a pids limit, a capped log, NET_RAW dropped, nothing of the host")
    func defaults() async throws {
        try await DockerTestEnvironment.prepare()
        let runtimes = DockerRuntimes(owner: "agent-test-\(UUID().uuidString.prefix(8).lowercased())")
        do {
            let runtime = runtimes.make()
            let id = uniqueTaskID("confined")
            // NoNewPrivs is 1 in /proc/self/status when no-new-privileges is on.
            let task = RuntimeTask(taskID: id, epoch: 1, name: "confined", image: DockerTestEnvironment.image,
                                   command: ["sh", "-c", "grep NoNewPrivs /proc/self/status"])
            try await runtime.start(task)
            let host = try await runtime.inspect(taskID: id).hostConfig
            #expect(host.securityOpt == ["no-new-privileges"])
            #expect(host.pidsLimit == 1024)
            #expect(host.logConfig?.type == "json-file")
            #expect(host.logConfig?.config == ["max-size": "10m", "max-file": "3"])
            #expect(host.capDrop == ["NET_RAW"])
            #expect(host.capAdd ?? [] == [])
            #expect(host.privileged == false)
            #expect(host.binds ?? [] == [])
            #expect(host.mounts?.isEmpty ?? true)
            #expect(host.devices?.isEmpty ?? true)
            #expect(!(host.networkMode ?? "").hasPrefix("host") && !(host.networkMode ?? "").hasPrefix("container:"))
            #expect(host.pidMode ?? "" == "")
            #expect(!(host.ipcMode ?? "").hasPrefix("host"))
            #expect(try await withTimeout(.seconds(120), "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))
            #expect(try await runtime.logs(taskID: id).text.contains("NoNewPrivs:\t1"))
        } catch {
            await runtimes.cleanUp()
            throw error
        }
        await runtimes.cleanUp()
    }

    @Test("the operator's limits reach the container and its pids cgroup")
    func operatorOverrides() async throws {
        try await DockerTestEnvironment.prepare()
        let runtimes = DockerRuntimes(owner: "agent-test-\(UUID().uuidString.prefix(8).lowercased())")
        do {
            let policy = TaskContainerPolicy(pidsLimit: 16, logMaxSize: "500k", logMaxFiles: 2)
            let runtime = runtimes.make(configuration: .init(containerPolicy: policy))
            let id = uniqueTaskID("pids")
            // The kernel's limit as the task sees it (cgroup v2, else v1).
            let task = RuntimeTask(taskID: id, epoch: 1, name: "pids", image: DockerTestEnvironment.image, command: [
                "sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
            ])
            try await runtime.start(task)
            let host = try await runtime.inspect(taskID: id).hostConfig
            #expect(host.pidsLimit == 16)
            #expect(host.logConfig?.config == ["max-size": "500k", "max-file": "2"])
            #expect(try await withTimeout(.seconds(120), "wait") { try await runtime.wait(taskID: id) } == .exited(code: 0))
            #expect(try await runtime.logs(taskID: id).text.trimmingCharacters(in: .whitespacesAndNewlines) == "16")
        } catch {
            await runtimes.cleanUp()
            throw error
        }
        await runtimes.cleanUp()
    }
}

@Suite struct TaskContainerPolicyTests {
    @Test("operator settings are validated with the flag's name", arguments: [
        (TaskContainerPolicy(), nil),
        (TaskContainerPolicy(pidsLimit: 0), "--task-pids-limit"),
        (TaskContainerPolicy(pidsLimit: -1), "--task-pids-limit"),
        (TaskContainerPolicy(logMaxSize: "10"), nil),
        (TaskContainerPolicy(logMaxSize: "1g"), nil),
        (TaskContainerPolicy(logMaxSize: "10mb"), "--task-log-max-size"),
        (TaskContainerPolicy(logMaxSize: "m"), "--task-log-max-size"),
        (TaskContainerPolicy(logMaxSize: "0m"), "--task-log-max-size"),
        (TaskContainerPolicy(logMaxSize: ""), "--task-log-max-size"),
        (TaskContainerPolicy(logMaxFiles: 0), "--task-log-max-files"),
    ] as [(TaskContainerPolicy, String?)])
    func validation(policy: TaskContainerPolicy, flag: String?) {
        do {
            try policy.validate()
            #expect(flag == nil)
        } catch {
            #expect(flag.map { error.description.hasPrefix($0) } == true, "\(error)")
        }
    }

    @Test("the create body carries the policy whatever the task asks")
    func createBody() throws {
        var host = TaskContainerPolicy(pidsLimit: 64, logMaxSize: "1m", logMaxFiles: 5).hostConfig
        host.memory = 64 << 20
        let body = DockerCreateContainer(image: "alpine", cmd: ["true"], env: [], labels: [:], hostConfig: host)
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(body)) as? [String: Any])
        let hostJSON = try #require(json["HostConfig"] as? [String: Any])
        #expect(hostJSON["SecurityOpt"] as? [String] == ["no-new-privileges"])
        #expect(hostJSON["PidsLimit"] as? Int == 64)
        #expect(hostJSON["CapDrop"] as? [String] == ["NET_RAW"])
        let log = try #require(hostJSON["LogConfig"] as? [String: Any])
        #expect(log["Type"] as? String == "json-file")
        #expect(log["Config"] as? [String: String] == ["max-size": "1m", "max-file": "5"])
        // Nothing that could loosen the container is ever sent.
        for key in ["Privileged", "Binds", "Mounts", "NetworkMode", "PidMode", "IpcMode", "Devices", "CapAdd", "UsernsMode"] {
            #expect(hostJSON[key] == nil, "\(key)")
        }
    }
}
