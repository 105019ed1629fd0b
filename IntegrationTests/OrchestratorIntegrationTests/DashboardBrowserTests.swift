import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TestGate

/// The `/ui` dashboard in headless Chromium (chromedriver's WebDriver API) against a real
/// 3-master cluster with HTTPS and an API token, and process-runtime workers (issue 18).
///
/// Skipped when `chromium` or `chromedriver` is missing, unless `CI` is set: then it fails
/// (`.ci/run` installs both). With `ORCH_SCREENSHOTS_DIR` set, a PNG of each view is written there
/// (`docs/dashboard-*.png` come from it).
@Suite(.serialized, .heavy) struct DashboardBrowserTests {
    static let token = "dashboard-token"
    static let auth = ["Authorization": "Bearer \(token)"]
    static let isCI: Bool = {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !["", "0", "false", "no"].contains(value.lowercased())
    }()
    static var installed: Bool { WebDriver.driverPath != nil && WebDriver.browserPath != nil }
    static var enabled: Bool { installed || isCI }
    static let screenshots = ProcessInfo.processInfo.environment["ORCH_SCREENSHOTS_DIR"].flatMap { $0.isEmpty ? nil : $0 }

    /// A 3-master cluster with the token, `workers` process workers joined and ready; the leader's index.
    static func startCluster(workers: Int) async throws -> (ClusterHarness, Int) {
        let cluster = try ClusterHarness(masters: 3, masterArgs: ["--api-token", token])
        try cluster.start()
        var leader = -1
        try await cluster.waitUntil("a leader known to every master, each listing 3 API addresses", timeout: .seconds(60)) {
            var leaders = Set<String>()
            for i in 0..<3 {
                let r = try await cluster.request(.GET, master: i, "/api/v1/cluster", headers: auth)
                guard let obj = r.json as? [String: Any], let id = obj["leader_id"] as? String,
                      let members = obj["members"] as? [[String: Any]],
                      members.filter({ !(($0["api_address"] as? String) ?? "").isEmpty }).count == 3 else { return false }
                leaders.insert(id)
            }
            guard leaders.count == 1, let n = Int(leaders.first!.dropFirst()) else { return false }
            leader = n - 1
            return true
        }
        for i in 1...workers { try cluster.addWorker(name: "w\(i)", cpu: 2000, memory: 2048, labels: "zone=z\(i)") }
        try await cluster.waitUntil("\(workers) ready nodes", timeout: .seconds(60)) {
            let r = try await cluster.request(.GET, master: 0, "/api/v1/nodes", headers: auth)
            let nodes = ((r.json as? [String: Any])?["nodes"] as? [[String: Any]]) ?? []
            return nodes.count == workers && nodes.allSatisfy { $0["state"] as? String == "ready" }
        }
        return (cluster, leader)
    }

    /// A browser on master `index`'s dashboard, the token entered and the first load done.
    static func openDashboard(_ cluster: ClusterHarness, master index: Int) async throws -> WebDriver {
        let browser = try await WebDriver(logPath: cluster.root + "/chromedriver.log")
        do {
            try await browser.navigate("\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[index])/ui#/cluster")
            try await waitFor(browser, "the token form", "return !document.getElementById('token-form').hidden")
            try await browser.type("#token-input", token)
            try await browser.click("#token-submit")
            try await waitFor(browser, "the first load", "return document.body.dataset.ready === 'true'")
            return browser
        } catch {
            await browser.quit()
            throw error
        }
    }

    /// Polls `script` in the page until it returns something truthy (a non-empty string, true, a
    /// number); that value.
    @discardableResult
    static func waitFor(_ browser: WebDriver, _ what: String, timeout: Duration = .seconds(30), _ script: String) async throws -> Any {
        let deadline = ContinuousClock.now + timeout
        var last: Any?
        while ContinuousClock.now < deadline {
            last = try? await browser.execute(script)
            switch last {
            case let b as Bool where b: return b
            case let s as String where !s.isEmpty: return s
            case let n as NSNumber where !(n is Bool) && n != 0: return n
            default: break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let page = (try? await browser.string("return document.querySelector('main').innerText.slice(0, 3000)")) ?? ""
        throw WebDriver.Failure(description: "timed out waiting for \(what) (last value: \(String(describing: last)))\npage:\n\(page)")
    }

    static func severeLogs(_ browser: WebDriver) async throws -> [String] {
        try await browser.browserLog().filter { $0.level == "SEVERE" }.map(\.message)
    }

    static func screenshot(_ browser: WebDriver, _ name: String) async throws {
        guard let dir = screenshots else { return }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try await browser.screenshot().write(to: URL(fileURLWithPath: dir).appendingPathComponent("dashboard-\(name).png"))
    }

    /// Runs `body` with the cluster and browser, and on failure records the masters' and
    /// chromedriver's logs; both are always stopped.
    static func withDashboard(workers: Int, pageOnLeader: Bool,
                              _ body: (ClusterHarness, WebDriver, Int, Int) async throws -> Void) async throws {
        guard installed else {
            Issue.record("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver); CI requires them")
            return
        }
        let (cluster, leader) = try await startCluster(workers: workers)
        defer { cluster.killAll() }
        let page = pageOnLeader ? leader : (leader + 1) % 3
        let browser: WebDriver
        do {
            browser = try await openDashboard(cluster, master: page)
        } catch {
            Issue.record("\(error)\n\(cluster.logs)\n== chromedriver\n\((try? String(contentsOfFile: cluster.root + "/chromedriver.log", encoding: .utf8))?.suffix(3000) ?? "")")
            throw error
        }
        do {
            try await body(cluster, browser, leader, page)
            await browser.quit()
        } catch {
            let console = (try? await browser.browserLog().map { "\($0.level) \($0.message)" }.joined(separator: "\n")) ?? ""
            await browser.quit()
            Issue.record("\(error)\n== browser console\n\(console)\n\(cluster.logs)")
            throw error
        }
    }
}
