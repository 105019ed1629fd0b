/// A small JSON writer and reader over bytes, for the records every master encodes and decodes on
/// every change (`TaskRecord`, `NodeRecord`): Foundation's `JSONEncoder`/`JSONDecoder` go through
/// `Codable`'s generic containers, and were a fifth of the masters' CPU under churn (perf,
/// BENCHMARKS.md). The text is the same JSON (sorted keys, the same escapes), so stored records,
/// snapshots and older masters are unaffected; anything the reader does not expect makes it throw,
/// and the caller falls back to `JSONDecoder`.

/// Appends JSON text to a byte buffer. Callers write an object's keys in sorted order (as
/// `JSONEncoder`'s `.sortedKeys` does); values after a key, or elements in an array, are separated
/// by commas automatically.
struct JSONByteWriter {
    private(set) var bytes: [UInt8] = []
    /// Whether the next value or key follows another one at the same level.
    private var needsComma = false
    /// Whether "/" is written "\/", as `JSONEncoder` does unless told `.withoutEscapingSlashes`
    /// (the stored records escape them; the API's views do not).
    let escapesSlashes: Bool

    init(capacity: Int = 512, escapesSlashes: Bool = true) {
        bytes.reserveCapacity(capacity)
        self.escapesSlashes = escapesSlashes
    }

    mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// A key; the next call writes its value.
    mutating func key(_ key: String) {
        string(key)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func string(_ value: String) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        // Most strings (ids, names, keys, images) need no escape: then their UTF-8 is copied whole
        // rather than appended byte by byte (nearly half of a task page's encoding in a profile).
        let copied: Bool? = value.utf8.withContiguousStorageIfAvailable { utf8 in
            guard !utf8.contains(where: needsEscape) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied != true { appendEscaped(value) }
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// Whether `byte` is written as an escape.
    private func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || (escapesSlashes && byte == UInt8(ascii: "/"))
    }

    private mutating func appendEscaped(_ value: String) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            // JSONEncoder escapes slashes unless told not to; the same text keeps records identical.
            case UInt8(ascii: "/") where escapesSlashes: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
    }

    mutating func integer<I: FixedWidthInteger>(_ value: I) {
        separate()
        // Digits written straight into the buffer: `String(value)` allocated a string per number.
        guard value != 0 else {
            bytes.append(UInt8(ascii: "0"))
            needsComma = true
            return
        }
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        // At most 39 digits (a 128-bit integer), written backwards into a small buffer, then appended once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { digits in
            var magnitude = value.magnitude
            var first = digits.count
            while magnitude > 0 {
                let (quotient, digit) = magnitude.quotientAndRemainder(dividingBy: 10)
                first -= 1
                digits[first] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: digit)
                magnitude = quotient
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[first...]))
        }
        needsComma = true
    }

    /// A finite number as Swift prints it (shortest round-trip form); a non-finite one, which JSON
    /// cannot carry, as 0.
    mutating func double(_ value: Double) {
        separate()
        bytes.append(contentsOf: (value.isFinite ? "\(value)" : "0").utf8)
        needsComma = true
    }

    mutating func bool(_ value: Bool) {
        separate()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
        needsComma = true
    }

    /// An object of strings, keys sorted.
    mutating func stringMap(_ map: [String: String]) {
        beginObject()
        for key in map.keys.sorted() {
            self.key(key)
            string(map[key]!)
        }
        endObject()
    }

    mutating func stringArray(_ array: [String]) {
        beginArray()
        for element in array { string(element) }
        endArray()
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }
}

/// Why `JSONByteReader` stopped: the caller falls back to `JSONDecoder`, which says it properly.
struct JSONByteReaderError: Error {
    let offset: Int
    let what: String
}

/// Reads JSON text from bytes, one value at a time, in the order it appears.
struct JSONByteReader {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Calls `field` with each key of an object; `field` must read (or `skip()`) its value.
    mutating func object(_ field: (inout JSONByteReader, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if try peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try field(&self, key)
            switch try next() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "}"): return
            default: throw fail("expected , or } in an object")
            }
        }
    }

    /// Calls `element` for each element of an array; `element` must read it.
    mutating func array(_ element: (inout JSONByteReader) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if try peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            try element(&self)
            switch try next() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "]"): return
            default: throw fail("expected , or ] in an array")
            }
        }
    }

    mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = index
        // The common case: no escape, so the bytes are the string (scanned without bounds checks
        // per byte: decoding a page of 500 tasks spent a tenth of its time here).
        let (stop, plain): (Int, String?) = bytes.withUnsafeBufferPointer { buffer in
            var i = start
            while i < buffer.count {
                let byte = buffer[i]
                if byte == UInt8(ascii: "\"") {
                    return (i, String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<i]), as: UTF8.self))
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                i += 1
            }
            return (i, nil)
        }
        index = stop
        if let plain {
            index += 1
            return plain
        }
        if index < bytes.count && bytes[index] < 0x20 { throw fail("a control character in a string") }
        var out = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw fail("an unfinished escape") }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): out.append(contentsOf: try unicodeEscape())
                default: throw fail("an unknown escape")
                }
            case 0..<0x20:
                throw fail("a control character in a string")
            default:
                out.append(byte)
            }
        }
        throw fail("an unfinished string")
    }

    /// An integer written without fraction or exponent (anything else is left to JSONDecoder).
    mutating func integer<I: FixedWidthInteger>(_: I.Type = I.self) throws -> I {
        skipWhitespace()
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        var value: I = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let digit = I(bytes[index] - UInt8(ascii: "0"))
            let (shifted, overflowA) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowB) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflowA && !overflowB else { throw fail("out of range for \(I.self)") }
            value = next
            digits += 1
            index += 1
        }
        guard digits > 0 else { throw fail("not an integer") }
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): throw fail("an integer with a fraction or exponent")
            default: break
            }
        }
        return value
    }

    mutating func double() throws -> Double {
        skipWhitespace()
        let start = index
        while index < bytes.count, Self.isNumberByte(bytes[index]) { index += 1 }
        guard let value = Double(String(decoding: bytes[start..<index], as: UTF8.self)), value.isFinite else {
            throw fail("not a number")
        }
        return value
    }

    mutating func bool() throws -> Bool {
        if try literal("true") { return true }
        if try literal("false") { return false }
        throw fail("not a boolean")
    }

    /// Reads a `null` if one comes next, and says whether it did.
    mutating func null() throws -> Bool {
        try literal("null")
    }

    /// A value of `T` unless the next value is `null`.
    mutating func optional<T>(_ read: (inout JSONByteReader) throws -> T) throws -> T? {
        if try null() { return nil }
        return try read(&self)
    }

    /// Reads past any value.
    mutating func skip() throws {
        switch try peek() {
        case UInt8(ascii: "{"): try object { reader, _ in try reader.skip() }
        case UInt8(ascii: "["): try array { try $0.skip() }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try bool()
        case UInt8(ascii: "n"): guard try null() else { throw fail("not null") }
        default: _ = try double()
        }
    }

    /// Only whitespace may follow the value just read.
    mutating func end() throws {
        skipWhitespace()
        guard index == bytes.count else { throw fail("bytes after the value") }
    }

    /// An object of strings.
    mutating func stringMap() throws -> [String: String] {
        var map: [String: String] = [:]
        try object { reader, key in map[key] = try reader.string() }
        return map
    }

    mutating func stringArray() throws -> [String] {
        var array: [String] = []
        try self.array { array.append(try $0.string()) }
        return array
    }

    /// A string that must be one of `T`'s raw values.
    mutating func rawValue<T: RawRepresentable>(_: T.Type) throws -> T where T.RawValue == String {
        guard let value = T(rawValue: try string()) else { throw fail("not a \(T.self)") }
        return value
    }

    // MARK: Bytes

    private mutating func literal(_ word: StaticString) throws -> Bool {
        skipWhitespace()
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { word in
            (0..<count).allSatisfy { bytes[index + $0] == word[$0] }
        }
        if matches { index += count }
        return matches
    }

    /// The 4 hex digits after `\u` (and a low surrogate's escape after a high one), as UTF-8.
    private mutating func unicodeEscape() throws -> [UInt8] {
        var scalar = try hex4()
        if (0xD800..<0xDC00).contains(scalar) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw fail("a lone high surrogate")
            }
            index += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("a high surrogate without its low one") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw fail("not a Unicode scalar") }
        return Array(String(Character(unicode)).utf8)
    }

    private mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
            throw fail("a bad \\u escape")
        }
        index += 4
        return value
    }

    private static func isNumberByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func peek() throws -> UInt8 {
        skipWhitespace()
        guard index < bytes.count else { throw fail("the end of the text") }
        return bytes[index]
    }

    private mutating func next() throws -> UInt8 {
        let byte = try peek()
        index += 1
        return byte
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard try next() == byte else { throw fail("expected \(Character(Unicode.Scalar(byte)))") }
    }

    private func fail(_ what: String) -> JSONByteReaderError {
        JSONByteReaderError(offset: index, what: what)
    }
}
