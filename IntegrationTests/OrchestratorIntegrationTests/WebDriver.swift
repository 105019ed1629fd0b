import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RaftTestSupport

/// A small client of the W3C WebDriver HTTP API, enough to drive headless Chromium through Debian's
/// `chromedriver`: a session, navigation, elements, clicks, typing, scripts, the browser's console
/// log and screenshots. It speaks JSON over plain HTTP to the chromedriver process it started
/// (with async-http-client, the HTTP client the rest of this target uses).
final class WebDriver: Sendable {
    /// `chromedriver` and `chromium` on PATH (Debian's packages put them in /usr/bin).
    static let driverPath = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let browserPath = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"].first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let driver: ManagedProcess
    let endpoint: String
    let session: String

    /// Starts chromedriver on a free port and opens a headless session that accepts the test CA's
    /// certificates (the cluster under test serves HTTPS with them) and records the console.
    init(logPath: String, windowSize: (Int, Int) = (1280, 900)) async throws {
        guard let driverPath = Self.driverPath, let browserPath = Self.browserPath else {
            throw Failure(description: "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
        }
        let port = try PortBlock.reserve(offsets: [0])
        driver = ManagedProcess(name: "chromedriver", binary: URL(fileURLWithPath: driverPath),
                                arguments: ["--port=\(port)", "--allowed-ips=127.0.0.1"], logPath: logPath)
        try driver.start()
        endpoint = "http://127.0.0.1:\(port)"
        let deadline = ContinuousClock.now + .seconds(20)
        var ready = false
        while !ready, ContinuousClock.now < deadline {
            let status = try? await Self.call(endpoint, .GET, "/status", nil)
            ready = ((status?["value"] as? [String: Any])?["ready"] as? Bool) == true
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard ready else {
            driver.kill9()
            throw Failure(description: "chromedriver did not answer within 20 s:\n\(driver.logTail)")
        }
        let capabilities: [String: Any] = ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": [
                "binary": browserPath,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=\(windowSize.0),\(windowSize.1)", "--no-first-run", "--disable-extensions"],
            ] as [String: Any],
            "goog:loggingPrefs": ["browser": "ALL"],
        ] as [String: Any]]]
        do {
            let reply = try await Self.call(endpoint, .POST, "/session", capabilities, timeout: .seconds(60))
            guard let id = (reply["value"] as? [String: Any])?["sessionId"] as? String else {
                throw Failure(description: "no session id in \(reply)")
            }
            session = id
        } catch {
            driver.kill9()
            throw error
        }
    }

    /// Ends the session and chromedriver (which ends its Chromium).
    func quit() async {
        _ = try? await Self.call(endpoint, .DELETE, "/session/\(session)", nil, timeout: .seconds(10))
        driver.kill9()
    }

    // MARK: Commands

    func navigate(_ url: String) async throws {
        _ = try await command(.POST, "/url", ["url": url])
    }

    /// The element's WebDriver id for a CSS selector; throws when there is none.
    func element(_ css: String) async throws -> String {
        let value = try await command(.POST, "/element", ["using": "css selector", "value": css])
        guard let element = (value as? [String: Any])?["element-6066-11e4-a52e-4f735466cecf"] as? String else {
            throw Failure(description: "no element id for \(css): \(String(describing: value))")
        }
        return element
    }

    /// Clicks the element `css` selects. The dashboard redraws a view when events arrive, so the
    /// element found may be replaced before the click lands: then it is found again (3 tries).
    func click(_ css: String) async throws {
        for attempt in 1...3 {
            do {
                _ = try await command(.POST, "/element/\(try await element(css))/click", [:])
                return
            } catch let error as Failure where error.description.contains("stale element") && attempt < 3 {
                continue
            }
        }
    }

    func type(_ css: String, _ text: String) async throws {
        _ = try await command(.POST, "/element/\(try await element(css))/value", ["text": text])
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its result.
    func execute(_ script: String, _ args: [Any] = []) async throws -> Any? {
        try await command(.POST, "/execute/sync", ["script": script, "args": args])
    }

    /// The string `script` returns ("" for null).
    func string(_ script: String) async throws -> String {
        (try await execute(script) as? String) ?? ""
    }

    /// The console entries since the last call, as (level, message).
    func browserLog() async throws -> [(level: String, message: String)] {
        let value = try await command(.POST, "/se/log", ["type": "browser"])
        return ((value as? [[String: Any]]) ?? []).map { ($0["level"] as? String ?? "", $0["message"] as? String ?? "") }
    }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let base64 = try await command(.GET, "/screenshot", nil) as? String, let data = Data(base64Encoded: base64) else {
            throw Failure(description: "no screenshot")
        }
        return data
    }

    func setWindowSize(width: Int, height: Int) async throws {
        _ = try await command(.POST, "/window/rect", ["width": width, "height": height])
    }

    // MARK: Transport

    func command(_ method: HTTPMethod, _ path: String, _ body: [String: Any]?) async throws -> Any? {
        try await Self.call(endpoint, method, "/session/\(session)\(path)", body)["value"]
    }

    /// One WebDriver call; a WebDriver error (`value.error`) is thrown with its message.
    static func call(_ endpoint: String, _ method: HTTPMethod, _ path: String, _ body: [String: Any]?,
                     timeout: TimeAmount = .seconds(30)) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer: bytes))) as? [String: Any] ?? [:]
        if let value = object["value"] as? [String: Any], let error = value["error"] as? String {
            throw Failure(description: "WebDriver \(method) \(path): \(error): \(value["message"] as? String ?? "")")
        }
        guard response.status.code == 200 else {
            throw Failure(description: "WebDriver \(method) \(path): HTTP \(response.status.code) \(String(buffer: bytes))")
        }
        return object
    }
}
