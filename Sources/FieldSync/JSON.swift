// JSON values of the engine. Text is read by jansson (JSONReading.swift) and
// written by the canonical writer (CanonicalJSON.swift); objects keep their
// members in code point order either way.

package enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

// MARK: - Equality

/// Strings are equal when their bytes are: JSON, SQLite and every peer treat
/// "é" and "e\u{301}" as different strings, unlike Swift's String ==.
extension JSON: Equatable {
    package static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.double(let x), .double(let y)): x == y
        case (.string(let x), .string(let y)): equalUTF8(x, y)
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x == y
        default: false
        }
    }
}

/// A string hashed and compared by its UTF-8 bytes, for sets and dictionary
/// keys of user data (record ids, set elements).
package struct ExactString: Hashable, Comparable, Sendable {
    package let value: String
    package init(_ value: String) { self.value = value }
    /// Two names as one key (a record's type and id): JSON text cannot carry
    /// the NUL that joins them.
    package init(_ first: String, _ second: String) {
        var first = first, second = second
        value = first.withUTF8 { a in
            second.withUTF8 { b in
                String(unsafeUninitializedCapacity: a.count + 1 + b.count) { out in
                    guard let base = out.baseAddress else { return 0 }
                    if let p = a.baseAddress { base.update(from: p, count: a.count) }
                    base[a.count] = 0
                    if let q = b.baseAddress { (base + a.count + 1).update(from: q, count: b.count) }
                    return a.count + 1 + b.count
                }
            }
        }
    }
    /// The two names of a key made by `init(_:_:)`.
    var pair: (String, String)? {
        let parts = value.utf8.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let first = String(parts[0]), let second = String(parts[1]) else { return nil }
        return (first, second)
    }
    package static func == (a: ExactString, b: ExactString) -> Bool { equalUTF8(a.value, b.value) }
    package static func < (a: ExactString, b: ExactString) -> Bool { codePointOrder(a.value, b.value) }
    package func hash(into hasher: inout Hasher) {
        let hashed: Void? = value.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil { for byte in value.utf8 { hasher.combine(byte) } }
    }
}

// MARK: - Access

extension JSON {
    package var object: JSONObject? { if case .object(let o) = self { o } else { nil } }
    package var array: [JSON]? { if case .array(let a) = self { a } else { nil } }
    package var string: String? { if case .string(let s) = self { s } else { nil } }
    package var int: Int64? { if case .int(let i) = self { i } else { nil } }
    package var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    package var isNull: Bool { if case .null = self { true } else { false } }
    /// A number as a double (ints converted).
    package var number: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
    package subscript(key: String) -> JSON? { object?[key] }

    /// Name of the JSON kind, for error messages.
    package var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
