import Foundation

/// What this machine (or the cgroup the worker runs in) offers: millicores and megabytes.
/// A container limited by cgroups sees the host's CPUs and memory in /proc, so the cgroup limits
/// are read first (v2 `cpu.max`/`memory.max`, then v1 `cpu.cfs_quota_us`/`memory.limit_in_bytes`).
public enum MachineCapacity {
    public static func detect(root: String = "") -> (cpu: Int, memory: Int) {
        let cpus = ProcessInfo.processInfo.activeProcessorCount * 1000
        let cpu = cgroupCPU(root: root).map { min($0, cpus) } ?? cpus
        let physical = Int(ProcessInfo.processInfo.physicalMemory / 1_048_576)
        let memory = cgroupMemory(root: root).map { min($0, physical) } ?? physical
        return (max(cpu, 1), max(memory, 1))
    }

    /// Millicores allowed by the cgroup, if limited.
    static func cgroupCPU(root: String) -> Int? {
        if let text = read(root + "/sys/fs/cgroup/cpu.max") {
            let parts = text.split(separator: " ")
            if parts.count == 2, let quota = Double(parts[0]), let period = Double(parts[1]), period > 0 {
                return Int(quota / period * 1000)
            }
            return nil
        }
        if let quota = read(root + "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").flatMap(Double.init), quota > 0,
           let period = read(root + "/sys/fs/cgroup/cpu/cpu.cfs_period_us").flatMap(Double.init), period > 0 {
            return Int(quota / period * 1000)
        }
        return nil
    }

    /// Megabytes allowed by the cgroup, if limited.
    static func cgroupMemory(root: String) -> Int? {
        if let text = read(root + "/sys/fs/cgroup/memory.max") {
            return UInt64(text).map { Int($0 / 1_048_576) }
        }
        if let bytes = read(root + "/sys/fs/cgroup/memory/memory.limit_in_bytes").flatMap(UInt64.init), bytes < (1 << 60) {
            return Int(bytes / 1_048_576)
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
