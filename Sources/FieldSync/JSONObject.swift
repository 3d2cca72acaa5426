// The members of a JSON object, kept sorted by key in code point order (the
// order of canonical JSON) and unique by the keys' bytes. Objects here are
// small (an action, a record, an outbox entry): building one is a single array,
// writing one needs no sort, and a lookup is a binary search. Swift's
// Dictionary hashed every key on every build and merged keys that differ only
// in Unicode normalization, which JSON and SQLite keep apart.

package struct JSONObject: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    package typealias Element = (key: String, value: JSON)

    package private(set) var members: [Element]

    package init() { members = [] }

    package init(minimumCapacity: Int) {
        members = []
        members.reserveCapacity(minimumCapacity)
    }

    /// Members already sorted and unique (JSONReading checks both).
    init(sortedMembers: [Element]) { members = sortedMembers }

    /// Members in any order; a later duplicate replaces an earlier one.
    package init<S: Sequence>(_ pairs: S) where S.Element == (key: String, value: JSON) {
        members = []
        members.reserveCapacity(pairs.underestimatedCount)
        for (key, value) in pairs { self[key] = value }
    }

    package init(dictionaryLiteral elements: (String, JSON)...) {
        members = elements.map { (key: $0.0, value: $0.1) }
        JSONObject.sortAndDeduplicate(&members)
    }

    /// Sorts by key bytes; of equal keys the later one stays. Returns a key
    /// that was there more than once, if any. Input in order (what canonical
    /// writers send) costs one pass; any other order O(n log n) comparisons.
    @discardableResult
    static func sortAndDeduplicate(_ members: inout [Element]) -> String? {
        guard members.count > 1 else { return nil }
        var ordered = true
        for i in 1..<members.count where compareUTF8(members[i - 1].key, members[i].key) >= 0 {
            ordered = false
            break
        }
        if ordered { return nil }
        // Stable (as the standard library guarantees), so of equal keys the
        // later stays after; an insertion sort here took 6.4 s for 40,000 keys.
        members.sort { compareUTF8($0.key, $1.key) < 0 }
        var duplicate: String?
        var out = 0
        for i in 0..<members.count {
            if out > 0 && compareUTF8(members[out - 1].key, members[i].key) == 0 {
                members[out - 1] = members[i]
                duplicate = duplicate ?? members[i].key
            } else {
                if out != i { members[out] = members[i] }
                out += 1
            }
        }
        if out < members.count { members.removeSubrange(out...) }
        return duplicate
    }

    package func makeIterator() -> IndexingIterator<[Element]> { members.makeIterator() }
    package var underestimatedCount: Int { members.count }
    package var count: Int { members.count }
    package var isEmpty: Bool { members.isEmpty }
    package var keys: LazyMapSequence<[Element], String> { members.lazy.map(\.key) }
    package var values: LazyMapSequence<[Element], JSON> { members.lazy.map(\.value) }
    package var first: Element? { members.first }

    /// Where `key` is, or where it would go.
    func position(of key: String) -> (index: Int, found: Bool) {
        var low = 0, high = members.count
        while low < high {
            let mid = (low + high) / 2
            let c = compareUTF8(members[mid].key, key)
            if c == 0 { return (mid, true) }
            if c < 0 { low = mid + 1 } else { high = mid }
        }
        return (low, false)
    }

    package subscript(key: String) -> JSON? {
        get {
            let (i, found) = position(of: key)
            return found ? members[i].value : nil
        }
        set {
            let (i, found) = position(of: key)
            switch (found, newValue) {
            case (true, .some(let value)): members[i].value = value
            case (true, .none): members.remove(at: i)
            case (false, .some(let value)):
                // Objects built member by member start at four, not one.
                if members.count == members.capacity { members.reserveCapacity(Swift.max(4, members.count * 2)) }
                members.insert((key, value), at: i)
            case (false, .none): break
            }
        }
    }

    package func mapValues(_ transform: (JSON) throws(FieldSyncError) -> JSON) throws(FieldSyncError) -> JSONObject {
        var out = members
        for i in out.indices { out[i].value = try transform(out[i].value) }
        return JSONObject(sortedMembers: out)
    }

    package func compactMapValues<T>(_ transform: (JSON) -> T?) -> [String: T] {
        var out: [String: T] = [:]
        for (key, value) in members { if let t = transform(value) { out[key] = t } }
        return out
    }

    package func filter(_ isIncluded: (Element) -> Bool) -> JSONObject {
        JSONObject(sortedMembers: members.filter(isIncluded))
    }

    /// `self` with the members of `other` added; on a shared key `combine`
    /// chooses the value.
    package func merging(_ other: JSONObject, uniquingKeysWith combine: (JSON, JSON) -> JSON) -> JSONObject {
        var out = self
        for (key, value) in other { out[key] = out[key].map { combine($0, value) } ?? value }
        return out
    }
}

extension JSONObject {
    /// A dictionary of anything JSON-encodable, as an object.
    package init<T>(_ dictionary: [String: T], _ encode: (T) -> JSON) {
        self.init(minimumCapacity: dictionary.count)
        for (key, value) in dictionary { self[key] = encode(value) }
    }
}

/// Byte order of two strings (= code point order): < 0, 0 or > 0.
/// Swift's own < and == compare canonical equivalence, not bytes; and
/// `utf8.elementsEqual` walks the view generically (~1k instructions a key
/// in the hub's dictionaries).
func compareUTF8(_ a: String, _ b: String) -> Int32 {
    let fast: Int32?? = a.utf8.withContiguousStorageIfAvailable { x in
        b.utf8.withContiguousStorageIfAvailable { y in
            let n = min(x.count, y.count)
            var i = 0
            while i < n {
                if x[i] != y[i] { return x[i] < y[i] ? -1 : 1 }
                i += 1
            }
            return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
        }
    }
    if let fast = fast ?? nil { return fast }
    var i = a.utf8.makeIterator(), j = b.utf8.makeIterator()
    while true {
        switch (i.next(), j.next()) {
        case (nil, nil): return 0
        case (nil, _): return -1
        case (_, nil): return 1
        case (let x?, let y?): if x != y { return x < y ? -1 : 1 }
        }
    }
}

/// Byte equality of two strings; the length check is O(1) for native strings.
func equalUTF8(_ a: String, _ b: String) -> Bool {
    a.utf8.count == b.utf8.count && compareUTF8(a, b) == 0
}

extension JSONObject: Equatable {
    /// Both sides are sorted the same way: equal objects have equal member lists.
    package static func == (x: JSONObject, y: JSONObject) -> Bool {
        x.count == y.count && zip(x.members, y.members).allSatisfy { a, b in
            equalUTF8(a.key, b.key) && a.value == b.value
        }
    }
}

/// What maps field names to values, JSON objects and Swift dictionaries
/// alike, so field renames (Migration) are written once for both.
protocol FieldMap: Sequence where Element == (key: String, value: Value) {
    associatedtype Value
    init()
    subscript(key: String) -> Value? { get set }
}

extension Dictionary: FieldMap where Key == String {}
extension JSONObject: FieldMap { package typealias Value = JSON }
