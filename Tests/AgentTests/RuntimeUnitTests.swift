@testable import Agent
import ClusterModel
import Testing

@Suite("Runtime pieces")
struct RuntimeUnitTests {
    /// Frames of `[stream, 0, 0, 0, size BE]` + payload, as dockerd sends them.
    static func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let n = UInt32(payload.count)
        return [stream, 0, 0, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + payload
    }

    @Test(arguments: [1, 2, 3, 7, 8, 9, 1000])
    func demuxerAcrossChunkBoundaries(chunkSize: Int) {
        let big = String(repeating: "z", count: 70_000)  // a size that needs the upper header bytes
        let stream = Self.frame(1, "out 1\n") + Self.frame(2, "err 1\n") + Self.frame(1, "") + Self.frame(1, big)
        var demuxer = DockerLogDemuxer()
        var out: [UInt8] = []
        var offset = 0
        while offset < stream.count {
            let chunk = stream[offset..<min(stream.count, offset + chunkSize)]
            demuxer.feed(chunk) { out.append(contentsOf: $0) }
            offset += chunkSize
        }
        #expect(out == Array(("out 1\nerr 1\n" + big).utf8))
        #expect(demuxer.frames == 4)
    }

    @Test func tailBufferKeepsTheLastBytes() {
        var tail = TailBuffer(capacity: 5)
        tail.append(contentsOf: Array("abc".utf8))
        #expect(tail.bytes == Array("abc".utf8))
        for ch in "defghijklmnop".utf8 { tail.append(contentsOf: [ch]) }
        #expect(tail.bytes == Array("lmnop".utf8))
        tail.append(contentsOf: Array("0123456789".utf8))
        #expect(tail.bytes == Array("56789".utf8))
        #expect(tail.totalCount == 26)
        var none = TailBuffer(capacity: 0)
        none.append(contentsOf: [1, 2, 3])
        #expect(none.bytes.isEmpty)
    }

    @Test func containerNames() {
        #expect(DockerRuntime.containerName(owner: "node-1", taskID: "task_42", epoch: 7) == "orch-node-1-task_42-7")
        #expect(DockerRuntime.containerName(owner: "n/1", taskID: "a b:c", epoch: 0) == "orch-n_1-a_b_c-0")
    }

    static func inspected(name: String, status: String, oom: Bool = false, code: Int64 = 0, error: String? = nil) -> DockerContainerInspect {
        DockerContainerInspect(
            id: "c1", name: name,
            state: .init(status: status, running: status == "running", oomKilled: oom, exitCode: code, error: error),
            config: .init(labels: [RuntimeLabel.owner: "n1", RuntimeLabel.taskID: "t1", RuntimeLabel.epoch: "2"]),
            hostConfig: .init(nanoCpus: nil, memory: nil, memorySwap: nil))
    }

    /// How an ended container's inspection reads as an outcome.
    @Test func dockerOutcomeRules() {
        let plain = "/orch-n1-t1-2"
        #expect(DockerRuntime.outcome(of: Self.inspected(name: plain, status: "exited", code: 3)) == .exited(code: 3))
        #expect(DockerRuntime.outcome(of: Self.inspected(name: plain, status: "exited", oom: true, code: 137)) == .oomKilled(code: 137))
        // An OOM kill of a child the task survived is not the task's failure.
        #expect(DockerRuntime.outcome(of: Self.inspected(name: plain, status: "exited", oom: true, code: 0)) == .exited(code: 0))
        // The -cancelled name (set by stop before signalling) wins over the exit code.
        #expect(DockerRuntime.outcome(of: Self.inspected(name: plain + "-cancelled", status: "exited", code: 143)) == .cancelled)
        if case .failed(.runtimeError, let message) = DockerRuntime.outcome(of: Self.inspected(name: plain, status: "created", error: "boom")) {
            #expect(message.contains("never started") && message.contains("boom"))
        } else {
            Issue.record("a created container is a runtime failure")
        }
        if case .failed(.runtimeError, _) = DockerRuntime.outcome(of: Self.inspected(name: plain, status: "dead")) {} else {
            Issue.record("a dead container is a runtime failure")
        }
    }

    @Test func graceRoundsUpToWholeSeconds() {
        #expect(DockerRuntime.wholeSeconds(.zero) == 0)
        #expect(DockerRuntime.wholeSeconds(.milliseconds(1)) == 1)
        #expect(DockerRuntime.wholeSeconds(.seconds(2)) == 2)
        #expect(DockerRuntime.wholeSeconds(.milliseconds(2500)) == 3)
        #expect(DockerRuntime.wholeSeconds(.seconds(-1)) == 0)
    }

    @Test func queryEncoding() {
        #expect(DockerAPI.percentEncode(#"{"label":["a=b"]}"#) == "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D")
        #expect(DockerAPI.percentEncode("é") == "%C3%A9")
        #expect(DockerAPI.encodeImagePath("registry:5000/a/b:1") == "registry%3A5000/a/b%3A1")
    }

    @Test func durationToTimeAmount() {
        #expect(Duration.milliseconds(1500).timeAmount == .milliseconds(1500))
        #expect(Duration.seconds(Int64.max).timeAmount == .nanoseconds(.max))
    }

    @Test func outcomesFromStartErrors() {
        let error = RuntimeError.imageNotFound(image: "x", message: "no registry")
        #expect(error.failureReason == .imageNotFound)
        #expect(error.outcome == .failed(reason: .imageNotFound, message: "image x is not present and cannot be pulled: no registry"))
        #expect(RuntimeError.dockerUnreachable(socketPath: "/s", message: "m").failureReason == .runtimeError)
        #expect(RuntimeError.invalidSpec(taskID: "t", message: "m").failureReason == .invalidSpec)
    }

    @Test func runtimeTaskFromSpec() {
        let spec = TaskSpec(name: "n", image: "alpine", command: ["echo", "hi"], env: ["A": "1"],
                            resources: Resources(cpu: 250, memory: 128))
        let task = RuntimeTask(taskID: "t", epoch: 4, spec: spec)
        #expect(task == RuntimeTask(taskID: "t", epoch: 4, name: "n", image: "alpine", command: ["echo", "hi"],
                                    env: ["A": "1"], cpuMillicores: 250, memoryMB: 128))
    }
}
