import Foundation
import Testing
@testable import Agent

@Suite struct MachineCapacityTests {
    /// A fake root with cgroup v2 files.
    static func root(cpuMax: String?, memoryMax: String?) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root + "/sys/fs/cgroup", withIntermediateDirectories: true)
        if let cpuMax { try cpuMax.write(toFile: root + "/sys/fs/cgroup/cpu.max", atomically: true, encoding: .utf8) }
        if let memoryMax { try memoryMax.write(toFile: root + "/sys/fs/cgroup/memory.max", atomically: true, encoding: .utf8) }
        return root
    }

    @Test("a cgroup limit wins over the machine: cpu.max 150000/100000 is 1,500 millicores, memory.max 512 MiB is 512 MB")
    func cgroupLimits() throws {
        let root = try Self.root(cpuMax: "150000 100000", memoryMax: "536870912")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let detected = MachineCapacity.detect(root: root)
        #expect(detected.cpu == min(1500, ProcessInfo.processInfo.activeProcessorCount * 1000))
        #expect(detected.memory == 512)
    }

    @Test("no limit ('max'): the machine's CPUs and memory")
    func unlimited() throws {
        let root = try Self.root(cpuMax: "max 100000", memoryMax: "max")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let detected = MachineCapacity.detect(root: root)
        #expect(detected.cpu == ProcessInfo.processInfo.activeProcessorCount * 1000)
        #expect(detected.memory == Int(ProcessInfo.processInfo.physicalMemory / 1_048_576))
    }
}
