import ClusterModel
import Testing

@Suite struct NodeIDTests {
    @Test("a new node id is the host name made a DNS label plus a random suffix, and masters accept it",
          arguments: ["worker-1", "My_Host.Example.COM", "---", "", String(repeating: "h", count: 80), "héllo wörld"])
    func newIDs(hostname: String) {
        let id = NodeInfo.newID(hostname: hostname)
        #expect(NodeInfo.isValidID(id), "\(id)")
        let prefix = id.split(separator: "-").dropLast().joined(separator: "-")
        #expect(prefix.count <= 40 && !prefix.hasPrefix("-"), "\(id)")
        if hostname.isEmpty || hostname == "---" { #expect(prefix == "node") }
        if hostname == "My_Host.Example.COM" { #expect(prefix == "my-host-example-com") }
    }

    @Test("ids a master refuses: empty, too long, upper case, other characters")
    func invalid() {
        for id in ["", String(repeating: "a", count: 64), "Node-1", "node_1", "node.1", "nöde"] {
            #expect(!NodeInfo.isValidID(id), "\(id)")
        }
        #expect(NodeInfo.isValidID(String(repeating: "a", count: 63)))
    }
}
