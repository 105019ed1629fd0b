import ArgumentParser
import Foundation
import Testing
@testable import OrchctlKit

@Suite struct MemberCommandTests {
    @Test("orchctl cluster still shows the cluster; cluster members lists by default; add, promote and rm parse")
    func parsing() throws {
        #expect(try Orchctl.parseAsRoot(["cluster"]) is ClusterCommand)
        #expect(try Orchctl.parseAsRoot(["cluster", "members"]) is MembersList)
        let add = try #require(try Orchctl.parseAsRoot(["cluster", "members", "add", "--rpc", "h4:9090", "--name", "m4", "--api", "h4:8080"]) as? MembersAdd)
        #expect(add.rpc == "h4:9090" && add.name == "m4" && add.api == "h4:8080" && add.etcd == nil)
        #expect((try Orchctl.parseAsRoot(["cluster", "members", "promote", "7"]) as? MembersPromote)?.id == "7")
        #expect((try Orchctl.parseAsRoot(["cluster", "members", "remove", "7"]) as? MembersRemove)?.id == "7")
        #expect(throws: (any Error).self) { try Orchctl.parseAsRoot(["cluster", "members", "add"]) }
    }

    @Test("the member table: id, name, voter or learner, addresses")
    func table() throws {
        let members = try #require(JSONValue.parse(#"""
        [{"id":1,"name":"m1","learner":false,"rpc_address":"h1:9090","api_address":"h1:8080"},
         {"id":42,"name":"m4","learner":true,"rpc_address":"h4:9090","api_address":""}]
        """#)?.array)
        let text = Views.memberTable(members).render(colours: false)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[1].split(separator: " ") == ["1", "m1", "voter", "h1:9090", "h1:8080"])
        #expect(lines[2].split(separator: " ") == ["42", "m4", "learner", "h4:9090"])
    }
}
