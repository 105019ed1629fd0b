// local-etcd: our 3-replica built-in store serving the etcd v3 API on loopback, in a process of its
// own. Prints "endpoints A,B,C" once it has a leader and runs until its standard input closes.
// The etcd API tests run `etcdctl check perf` against it, away from other suites' load (and
// SIGKILL it if it hangs).
import EtcdAPITestSupport
import Foundation
import Logging

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

let cluster = try await LocalEtcdCluster.start()
FileHandle.standardOutput.write(Data("endpoints \(cluster.endpoints.joined(separator: ","))\n".utf8))
// Runs until the parent closes our standard input (or dies, which closes it too).
_ = await Task.detached { FileHandle.standardInput.readDataToEndOfFile() }.value
await cluster.shutdown()
exit(0)
