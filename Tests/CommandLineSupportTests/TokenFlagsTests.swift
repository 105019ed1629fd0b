import CommandLineSupport
import Foundation
import Testing

@Suite struct TokenFlagsTests {
    struct NoFile: Error {}

    /// Reads from a fake file system: a path maps to its bytes, anything else does not exist.
    static func files(_ contents: [String: String]) -> (String) throws -> Data {
        { path in
            guard let text = contents[path] else { throw CocoaError(.fileReadNoSuchFile) }
            return Data(text.utf8)
        }
    }

    @Test("a token comes from the flag, from the file less one trailing newline, or not at all", arguments: [
        (nil, nil, nil),
        ("t0k", nil, "t0k"),
        (nil, "/plain", "s3cret"),
        (nil, "/newline", "s3cret"),
        (nil, "/crlf", "s3cret"),
        (nil, "/two-newlines", "s3cret\n"),
        (nil, "/spaces", " s3cret "),
    ] as [(String?, String?, String?)])
    func resolves(value: String?, file: String?, expected: String?) throws {
        let read = Self.files(["/plain": "s3cret", "/newline": "s3cret\n", "/crlf": "s3cret\r\n",
                               "/two-newlines": "s3cret\n\n", "/spaces": " s3cret "])
        #expect(try TokenFlags.resolve(flag: "join-token", value: value, file: file, read: read) == expected)
    }

    @Test("both, an empty file or a missing file is a one-line error naming the flag")
    func refuses() {
        let read = Self.files(["/empty": "", "/newline-only": "\n", "/t": "t"])
        #expect(throws: TokenFlagError.both(flag: "api-token")) {
            try TokenFlags.resolve(flag: "api-token", value: "x", file: "/t", read: read)
        }
        #expect(throws: TokenFlagError.empty(flag: "join-token", path: "/empty")) {
            try TokenFlags.resolve(flag: "join-token", value: nil, file: "/empty", read: read)
        }
        #expect(throws: TokenFlagError.empty(flag: "join-token", path: "/newline-only")) {
            try TokenFlags.resolve(flag: "join-token", value: nil, file: "/newline-only", read: read)
        }
        #expect(throws: TokenFlagError.unreadable(flag: "join-token", path: "/nope", reason: "no such file")) {
            try TokenFlags.resolve(flag: "join-token", value: nil, file: "/nope", read: read)
        }
        for error in [TokenFlagError.both(flag: "api-token"), .empty(flag: "join-token", path: "/e"),
                      .unreadable(flag: "join-token", path: "/n", reason: "no such file")] {
            #expect(!error.description.contains("\n"))
        }
        #expect(TokenFlagError.both(flag: "api-token").description.contains("--api-token-file"))
        #expect(TokenFlagError.both(flag: "api-token").description.contains("ORCH_API_TOKEN_FILE"))
        #expect(TokenFlagError.empty(flag: "join-token", path: "/e").description.hasPrefix("--join-token-file"))
    }

    @Test("a real file: missing, then written by `echo`")
    func realFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("token-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: TokenFlagError.unreadable(flag: "join-token", path: path, reason: "no such file")) {
            try TokenFlags.resolve(flag: "join-token", value: nil, file: path)
        }
        try Data("from-a-file\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try TokenFlags.resolve(flag: "join-token", value: nil, file: path) == "from-a-file")
    }

    @Test("the file flags are read from ORCH_ variables like the others")
    func environment() {
        let merged = EnvironmentFlags.merge(["--id", "m1"], flags: ["join-token-file", "api-token"], switches: ["insecure"],
                                            environment: ["ORCH_JOIN_TOKEN_FILE": "/run/secrets/join", "ORCH_INSECURE": "1"])
        #expect(merged == ["--id", "m1", "--join-token-file", "/run/secrets/join", "--insecure"])
    }
}
