import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

extension DashboardBrowserTests {
    @Test("the dashboard: loads with no console error, shows 3 masters and the leader, submits a task the table shows completed, drains a node",
          .enabled(if: enabled, "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"),
          .timeLimit(.minutes(5)))
    func views() async throws {
        try await Self.withDashboard(workers: 2, pageOnLeader: false) { cluster, browser, leader, page in
            // Cluster: three masters, one of them the leader, each healthy.
            try await Self.waitFor(browser, "3 healthy masters",
                                   "return document.querySelectorAll('#members tbody tr[data-health=\"healthy\"]').length === 3")
            let leaders = try await browser.string(
                "return [...document.querySelectorAll('#members tbody tr[data-role=\"leader\"]')].map(r => r.dataset.member).join(',')")
            #expect(leaders == "m\(leader + 1)", "the leader row")
            #expect(try await browser.string("return document.body.dataset.master") == "m\(page + 1)")
            #expect(try await browser.string("return document.getElementById('banner').hidden ? 'hidden' : 'shown'") == "hidden")
            #expect(try await Self.severeLogs(browser) == [], "console errors after the first load")
            try await Self.screenshot(browser, "cluster")

            // Tasks: the form comes with the README's example; submitting it creates a task the
            // table shows going to completed (live, through the event stream).
            try await browser.navigate("\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[page])/ui#/tasks")
            try await Self.waitFor(browser, "the token kept for the tab, and the reload done", "return document.body.dataset.ready === 'true'")
            try await browser.click("#submit summary")
            let example = try await browser.string("return document.getElementById('submit-spec').value")
            #expect(example.contains("\"hello world\""), "\(example)")
            try await browser.click("#submit-button")
            let id = try #require(try await Self.waitFor(browser, "the created task's id",
                                                         "const a = document.querySelector('[data-created]'); return a ? a.dataset.created : ''") as? String)
            try await Self.waitFor(browser, "task \(id) completed in the table", timeout: .seconds(60),
                                   "const r = document.querySelector('#tasks tr[data-task=\"\(id)\"]'); return r && r.dataset.state === 'completed'")
            let stored = try await cluster.request(.GET, master: leader, "/api/v1/tasks/\(id)", headers: Self.auth)
            #expect((stored.json as? [String: Any])?["state"] as? String == "completed", "\(stored.body)")
            #expect(try await browser.string("return document.querySelector('#tasks tr[data-task=\"\(id)\"] td:nth-child(2)').innerText")
                .contains("completed"), "the state is written out, not only coloured")

            // The task's page: its history from created to completed, its placement, its logs.
            try await browser.click("#tasks tr[data-task=\"\(id)\"] a")
            try await Self.waitFor(browser, "the history up to completed", timeout: .seconds(20),
                                   "return [...document.querySelectorAll('#task-history li')].map(l => l.innerText).join('|').includes('task_completed')")
            let history = try await browser.string("return [...document.querySelectorAll('#task-history li')].map(l => l.innerText).join('\\n')")
            for step in ["task_created", "task_assigned", "task_running", "task_completed"] { #expect(history.contains(step), "\(history)") }
            // Followed (`?follow=true`) to the end of the copy: the output, then the stream's `end`
            // (which names no exit code for a copy that had already ended: the summary shows it).
            try await Self.waitFor(browser, "the logs to their end",
                                   "const t = document.getElementById('task-logs').innerText; return t.includes('hello world') && t.includes('[ended')")
            #expect(try await browser.string("return document.getElementById('task-placement').innerText").contains("Placed on"))
            try await Self.screenshot(browser, "task")

            // Cancel from a task's page: a long task goes to cancelled; a failing one shows failed.
            func submit(_ name: String, _ command: String) async throws -> String {
                let r = try await cluster.request(.POST, master: leader, "/api/v1/tasks",
                                                  body: ClusterIntegrationTests.taskBody(name, command: command), headers: Self.auth)
                return try #require((r.json as? [String: Any])?["id"] as? String, "\(r.status) \(r.body)")
            }
            let sleeper = try await submit("sleeper", "sleep 60")
            let failing = try await submit("exits-3", "exit 3")
            try await browser.execute("location.hash = '#/tasks/\(sleeper)'")
            try await Self.waitFor(browser, "the sleeper running on its page", "return document.getElementById('view-task').dataset.state === 'running'")
            try await browser.click("#task-cancel")
            try await Self.waitFor(browser, "the sleeper cancelled on its page", "return document.getElementById('view-task').dataset.state === 'cancelled'")
            #expect(try await browser.string("return document.getElementById('task-result').innerText") == "Cancel requested.")
            try await browser.execute("location.hash = '#/tasks'")
            try await Self.waitFor(browser, "the failing task failed in the table",
                                   "const r = document.querySelector('#tasks tr[data-task=\"\(failing)\"]'); return r && r.dataset.state === 'failed'")
            try await browser.click("#submit summary")  // folded: the table in view
            try await Self.screenshot(browser, "tasks")

            // Nodes: drain one from its button; the card says draining.
            try await browser.navigate("\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[page])/ui#/nodes")
            try await Self.waitFor(browser, "2 node cards", "return document.querySelectorAll('#node-list [data-node]').length === 2")
            let node = try await browser.string("return document.querySelector('#node-list [data-node]').dataset.node")
            try await browser.click("#node-list [data-node=\"\(node)\"] button[data-action=\"drain\"]")
            try await Self.waitFor(browser, "node \(node) draining",
                                   "return document.querySelector('#node-list [data-node=\"\(node)\"]').dataset.state.includes('draining')")
            #expect(try await browser.string("return document.querySelector('#node-list [data-node=\"\(node)\"]').innerText").contains("draining"))
            let nodes = try await cluster.nodes(master: leader, headers: Self.auth)
            #expect(nodes.first { $0["id"] as? String == node }?["state"] as? String == "draining")
            try await Self.screenshot(browser, "nodes")

            try await browser.navigate("\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[page])/ui#/events")
            try await Self.waitFor(browser, "the events view", "return document.querySelectorAll('#event-list li').length > 0")
            try await Self.screenshot(browser, "events")
            // A narrow screen: the views stay usable (nothing wider than the window).
            try await browser.setWindowSize(width: 400, height: 800)
            try await browser.navigate("\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[page])/ui#/nodes")
            try await Self.waitFor(browser, "the reload", "return document.body.dataset.ready === 'true'")
            let overflow = (try await browser.execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth") as? NSNumber)?.intValue
            #expect(overflow == 0, "horizontal overflow on a narrow screen: \(String(describing: overflow)) px")
            try await Self.screenshot(browser, "narrow")
            #expect(try await Self.severeLogs(browser) == [], "console errors")
        }
    }

    @Test("killing the master the page is on moves the page to another master, and the events it shows have no gap; alone, it says it knows no leader",
          .enabled(if: enabled, "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"),
          .timeLimit(.minutes(5)))
    func failover() async throws {
        try await Self.withDashboard(workers: 1, pageOnLeader: true) { cluster, browser, _, page in
            try await browser.execute("location.hash = '#/events'")
            let survivors = (0..<3).filter { $0 != page }
            func submit(_ name: String, through master: Int) async throws {
                let r = try await cluster.request(.POST, master: master, "/api/v1/tasks",
                                                  body: ClusterIntegrationTests.taskBody(name, command: "echo \(name)"), headers: Self.auth)
                #expect(r.status == 201, "\(r.body)")
            }
            for i in 0..<3 { try await submit("before-\(i)", through: survivors[i % 2]) }
            try await Self.waitFor(browser, "the 3 first tasks completed, as the page saw it",
                                   "return [...document.querySelectorAll('#event-list li')].filter(l => l.innerText.includes('task_completed')).length >= 3")
            let before = try await browser.string("return document.getElementById('view-events').dataset.eventIds")

            cluster.masters[page].kill9()
            for i in 0..<3 { try await submit("after-\(i)", through: survivors[i % 2]) }
            let moved = try #require(try await Self.waitFor(browser, "the page on another master",
                                                            "const m = document.body.dataset.master; return m !== 'm\(page + 1)' ? m : ''") as? String)
            #expect(survivors.map { "m\($0 + 1)" }.contains(moved))
            try await Self.waitFor(browser, "the 3 later tasks completed, as the page saw it", timeout: .seconds(60),
                                   "return [...document.querySelectorAll('#event-list li')].filter(l => l.innerText.includes('task_completed')).length >= 6")
            #expect(try await browser.string("return document.getElementById('banner').innerText").contains("stopped answering"))
            try await Self.screenshot(browser, "failover")

            // What the page recorded, against what the cluster has: every id after the page's
            // starting point, once and in order, across the move.
            let ids = try await browser.string("return document.getElementById('view-events').dataset.eventIds").split(separator: ",").map(String.init)
            #expect(ids.starts(with: before.split(separator: ",").map(String.init)), "the ids before the kill were kept")
            let start = try await browser.string("return document.getElementById('view-events').dataset.since")
            let server = try await Self.eventIDs(cluster, master: survivors[0], since: start, through: try #require(ids.last))
            #expect(ids == server, "page: \(ids)\nserver: \(server)")
            print("dashboard failover: m\(page + 1) killed, the page moved to \(moved); \(ids.count) event ids from \(start) to \(ids.last ?? "-"), the server's the same")

            // The last other master killed too: the page's master is alone, knows no leader, and says so.
            let other = try #require(survivors.first { "m\($0 + 1)" != moved })
            cluster.masters[other].kill9()
            try await Self.waitFor(browser, "the no-leader banner", timeout: .seconds(30),
                                   "return document.getElementById('banner').innerText.includes('knows no leader')")
            try await browser.execute("location.hash = '#/cluster'")
            try await Self.waitFor(browser, "2 masters unreachable, none leading",
                                   "return document.querySelectorAll('#members tbody tr[data-health=\"unreachable\"]').length === 2 && !document.querySelector('#members tbody tr[data-role=\"leader\"]')")
            #expect(try await browser.string("return document.getElementById('view-events').dataset.gaps") == "0")
            #expect(Int(try await browser.string("return String(document.getElementById('view-events').dataset.reconnects)")) ?? 0 >= 1)
        }
    }

    /// The ids of `/api/v1/events?since=` on `master`, up to and including `last` (bounded in time).
    static func eventIDs(_ cluster: ClusterHarness, master: Int, since: String, through last: String) async throws -> [String] {
        let url = "\(cluster.scheme)://127.0.0.1:\(cluster.apiPorts[master])/api/v1/events?since=\(since)"
        let http = cluster.http
        return try await withThrowingTaskGroup(of: [String]?.self) { group in
            group.addTask {
                var request = HTTPClientRequest(url: url)
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                let response = try await http.execute(request, timeout: .seconds(20))
                var ids: [String] = []
                var text = ""
                for try await chunk in response.body {
                    text += String(buffer: chunk)
                    while let cut = text.range(of: "\n\n") {
                        let block = text[..<cut.lowerBound]
                        text = String(text[cut.upperBound...])
                        if let line = block.split(separator: "\n").first(where: { $0.hasPrefix("id: ") }) {
                            ids.append(String(line.dropFirst(4)))
                            if ids.last == last { return ids }
                        }
                    }
                }
                return ids
            }
            group.addTask {
                try await Task.sleep(for: .seconds(20))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let ids = first else { throw WebDriver.Failure(description: "the server's stream did not reach id \(last) within 20 s") }
            return ids
        }
    }
}

extension ClusterHarness {
    func nodes(master: Int, headers: [String: String]) async throws -> [[String: Any]] {
        let r = try await request(.GET, master: master, "/api/v1/nodes", headers: headers)
        guard r.status == 200, let obj = r.json as? [String: Any] else { throw HarnessError.http(r.status, r.body) }
        return (obj["nodes"] as? [[String: Any]]) ?? []
    }
}
