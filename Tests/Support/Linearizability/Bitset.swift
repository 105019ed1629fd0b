/// A fixed-size set of small integers: which operations of a partition are linearized so far.
///
/// Part of the search cache's key, so equality and hashing look at the words, as porcupine's does.
struct Bitset: Hashable, Sendable {
    private var words: [UInt64]

    init(capacity: Int) {
        words = Array(repeating: 0, count: (capacity + 63) / 64)
    }

    func contains(_ member: Int) -> Bool {
        words[member / 64] & (1 << UInt64(member % 64)) != 0
    }

    mutating func insert(_ member: Int) {
        words[member / 64] |= 1 << UInt64(member % 64)
    }

    mutating func remove(_ member: Int) {
        words[member / 64] &= ~(1 << UInt64(member % 64))
    }
}
