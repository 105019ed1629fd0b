import ArgumentParser
import ClusterSecurity

/// `master tls init|issue`: the cluster's CA and certificates. The work is `TLSInit` and
/// `TLSIssue` in ClusterSecurity; these commands only read flags.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "Create the cluster's CA and the certificates of its masters, workers and clients.",
        subcommands: [TLSInitCommand.self, TLSIssueCommand.self])
}

/// `master tls init DIR --master m1=HOST,... [--worker NAME]... [--client NAME]... [--etcd e1=HOST]... [--days N]`.
struct TLSInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a CA in DIR and a certificate and key for each master, worker, client and etcd member.",
        discussion: """
            Writes DIR/ca.pem, DIR/ca-key.pem (keep it off the servers) and DIR/<role>-<name>.pem with \
            DIR/<role>-<name>-key.pem for each identity; keys are 0600. Masters also get 127.0.0.1 and \
            localhost unless --no-loopback.
            """)

    @Argument(help: "The directory to write to (created 0700).") var directory: String
    @Option(name: .customLong("master"), help: "A master: NAME=HOST[,HOST...] (host names and IP literals it is reached at).")
    var masters: [String] = []
    @Option(name: .customLong("worker"), help: "A worker: NAME, or NAME=HOST[,HOST...] if masters reach it by name.")
    var workers: [String] = []
    @Option(name: .customLong("client"), help: "A client of the APIs: NAME.") var clients: [String] = []
    @Option(name: .customLong("etcd"), help: "A member of the external etcd of --store etcd: NAME=HOST[,HOST...].")
    var etcdMembers: [String] = []
    @Option(help: "Validity of the certificates, in days.") var days = CertificateAuthority.defaultLeafDays
    @Option(help: "Validity of the CA, in days.") var caDays = CertificateAuthority.defaultDays
    @Flag(help: "Do not add 127.0.0.1 and localhost to the masters' certificates.") var noLoopback = false
    @Flag(help: "Replace an existing CA (every certificate it issued stops being trusted).") var force = false

    /// The plan the flags describe.
    func makePlan() throws -> TLSInit {
        var plan = TLSInit(directory: directory, requests: try requests(masters, .master) + requests(workers, .worker) + requests(clients, .client)
                                                 + requests(etcdMembers, .etcd))
        plan.days = days
        plan.caDays = caDays
        plan.loopback = !noLoopback
        plan.force = force
        return plan
    }

    func validate() throws {
        guard days > 0, caDays > 0 else { throw ValidationError("--days and --ca-days must be positive") }
        for master in masters where !master.contains("=") {
            throw ValidationError("--master \(master): a master needs its hosts, NAME=HOST[,HOST...]")
        }
        for member in etcdMembers where !member.contains("=") {
            throw ValidationError("--etcd \(member): an etcd member needs its hosts, NAME=HOST[,HOST...]")
        }
        do { _ = try makePlan() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        print(try makePlan().run().text)
    }
}

/// `master tls issue DIR --worker NAME|--client NAME|--master NAME=HOST,...|--etcd NAME=HOST,...`.
struct TLSIssueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue one more certificate from the CA in DIR (made by `master tls init`).")

    @Argument(help: "The directory with ca.pem and ca-key.pem; the new files go there too.") var directory: String
    @Option(name: .customLong("master"), help: "A master: NAME=HOST[,HOST...].") var master: String?
    @Option(name: .customLong("worker"), help: "A worker: NAME or NAME=HOST[,HOST...].") var worker: String?
    @Option(name: .customLong("client"), help: "A client: NAME.") var client: String?
    @Option(name: .customLong("etcd"), help: "A member of the external etcd: NAME=HOST[,HOST...].") var etcdMember: String?
    @Option(help: "Validity, in days.") var days = CertificateAuthority.defaultLeafDays
    @Flag(help: "Do not add 127.0.0.1 and localhost to a master's certificate.") var noLoopback = false
    @Flag(help: "Replace an existing certificate of the same identity.") var force = false

    /// The plan the flags describe.
    func makePlan() throws -> TLSIssue {
        let given = try requests(master.map { [$0] } ?? [], .master) + requests(worker.map { [$0] } ?? [], .worker)
            + requests(client.map { [$0] } ?? [], .client) + requests(etcdMember.map { [$0] } ?? [], .etcd)
        guard given.count == 1 else { throw TLSToolError.notExactlyOneIdentity(given.count) }
        var plan = TLSIssue(directory: directory, request: given[0])
        plan.days = days
        plan.loopback = !noLoopback
        plan.force = force
        return plan
    }

    func validate() throws {
        guard days > 0 else { throw ValidationError("--days must be positive") }
        if let master, !master.contains("=") { throw ValidationError("--master \(master): a master needs its hosts, NAME=HOST[,HOST...]") }
        if let etcdMember, !etcdMember.contains("=") { throw ValidationError("--etcd \(etcdMember): an etcd member needs its hosts, NAME=HOST[,HOST...]") }
        do { _ = try makePlan() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        print(try makePlan().run().text)
    }
}

/// The requests for `role` from its flags' values.
private func requests(_ specs: [String], _ role: ClusterRole) throws -> [CertificateRequest] {
    try specs.map { try CertificateRequest(role: role, spec: $0) }
}
