extension Duration {
    /// The duration in whole milliseconds (rounded toward zero): what the records, the health
    /// policy and the leader's periods count in.
    public var wholeMilliseconds: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }
}
