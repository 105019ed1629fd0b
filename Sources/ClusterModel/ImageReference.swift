/// Docker image references, `[registry[:port]/]path[:tag][@sha256:<64 hex>]` with path components
/// in lower case: the masters refuse a task with any other image, and a worker refuses to start one.
public enum ImageReference {
    /// Why `image` is not a valid reference (one line naming the fault), or nil when it is.
    ///
    /// Parsed by Unicode scalar, not by `Character`: a delimiter followed by a combining mark or an
    /// emoji modifier is one Character in Swift (":🏻" is not ":"), so a Character-wise parse
    /// missed a registry host the API's own pattern (matched per code point) accepts.
    public static func problem(with image: String) -> String? {
        guard !image.isEmpty else { return "must not be empty" }
        guard image.unicodeScalars.count <= 255 else { return "longer than 255 characters" }
        var rest = Substring(image).unicodeScalars[...]
        if let at = rest.firstIndex(of: "@") {
            let digest = rest[rest.index(after: at)...]
            guard digest.starts(with: "sha256:".unicodeScalars), digest.count == 71,
                  digest.dropFirst(7).allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else {
                return "\"\(image)\" has a malformed digest (expected @sha256:<64 hex digits>)"
            }
            rest = rest[..<at]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let last = components.popLast() else { return "\"\(image)\" is not an image reference" }
        var name = last
        if let colon = last.firstIndex(of: ":") {
            let tag = last[last.index(after: colon)...]
            guard !tag.isEmpty, tag.count <= 128, tag.first != "." && tag.first != "-",
                  tag.allSatisfy({ isASCIILetterOrDigit($0) || "_.-".unicodeScalars.contains($0) }) else {
                return "\"\(image)\" has an invalid tag"
            }
            name = last[..<colon]
        }
        // A first component with a dot, a colon or "localhost" is a registry host.
        if let first = components.first,
           first.contains(".") || first.contains(":") || first.elementsEqual("localhost".unicodeScalars) {
            components.removeFirst()
        }
        for component in components + [name] {
            guard let head = component.first, let tail = component.last,
                  component.allSatisfy({ isLowerOrDigit($0) || "._-".unicodeScalars.contains($0) }),
                  isLowerOrDigit(head), isLowerOrDigit(tail) else {
                return "\"\(image)\" is not a valid image reference (lower-case letters, digits and . _ - per path component)"
            }
        }
        return nil
    }

    private static func isLowerOrDigit(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("0"..."9").contains(c)
    }

    private static func isASCIILetterOrDigit(_ c: Unicode.Scalar) -> Bool {
        isLowerOrDigit(c) || ("A"..."Z").contains(c)
    }
}
