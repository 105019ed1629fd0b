/// Docker image references, `[registry[:port]/]path[:tag][@sha256:<64 hex>]` with path components
/// in lower case: the masters refuse a task with any other image, and a worker refuses to start one.
public enum ImageReference {
    /// Why `image` is not a valid reference (one line naming the fault), or nil when it is.
    public static func problem(with image: String) -> String? {
        guard !image.isEmpty else { return "must not be empty" }
        guard image.unicodeScalars.count <= 255 else { return "longer than 255 characters" }
        var rest = Substring(image)
        if let at = rest.firstIndex(of: "@") {
            let digest = rest[rest.index(after: at)...]
            guard digest.hasPrefix("sha256:"), digest.count == 71,
                  digest.dropFirst(7).allSatisfy({ $0.isASCII && $0.isHexDigit && !$0.isUppercase }) else {
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
                  tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }) else {
                return "\"\(image)\" has an invalid tag"
            }
            name = last[..<colon]
        }
        // A first component with a dot, a colon or "localhost" is a registry host.
        if let first = components.first, components.count >= 1,
           first.contains(".") || first.contains(":") || first == "localhost" {
            components.removeFirst()
        }
        for component in components + [name] {
            guard !component.isEmpty,
                  component.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }),
                  component.first!.isLetter || component.first!.isNumber,
                  component.last!.isLetter || component.last!.isNumber else {
                return "\"\(image)\" is not a valid image reference (lower-case letters, digits and . _ - per path component)"
            }
        }
        return nil
    }
}
