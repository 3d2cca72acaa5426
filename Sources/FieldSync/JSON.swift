// JSON values of the engine: parsed with jansson (which validates UTF-8 and
// rejects duplicate keys), written by our own encoder so that output is
// canonical (sorted keys, no whitespace) — the audit hash depends on that.
import CJansson
import Glibc

package enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])
}

// MARK: - Parsing

extension JSON {
    /// Parses `count` bytes at `bytes`; any JSON value is accepted at the top.
    package static func parse(bytes: UnsafeRawPointer, count: Int, what: String,
                              limit: Int = Limits.maxJSONBytes) throws(FieldSyncError) -> JSON {
        if count > limit {
            throw .tooBig("\(what) is \(count) bytes; the limit is \(limit)")
        }
        var error = json_error_t()
        let flags = Int(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
        guard let root = json_loadb(bytes.assumingMemoryBound(to: CChar.self), count, flags, &error) else {
            let reason = withUnsafeBytes(of: &error.text) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw .json("\(what) is not valid JSON: \(reason) (line \(error.line), column \(error.column))")
        }
        defer { json_decref(root) }
        return try JSON(jansson: root, what: what)
    }

    package static func parse(_ text: String, what: String = "JSON text") throws(FieldSyncError) -> JSON {
        var text = text
        let result = text.withUTF8 { buf in
            Result { () throws(FieldSyncError) -> JSON in
                guard let base = buf.baseAddress else { throw .json("\(what) is empty") }
                return try parse(bytes: base, count: buf.count, what: what)
            }
        }
        return try result.get()
    }

    private init(jansson j: UnsafeMutablePointer<json_t>, what: String) throws(FieldSyncError) {
        switch fs_json_type(j) {
        case Int32(JSON_OBJECT.rawValue):
            var members: [String: JSON] = [:]
            members.reserveCapacity(json_object_size(j))
            var iter = json_object_iter(j)
            while let it = iter {
                if let key = json_object_iter_key(it), let value = json_object_iter_value(it) {
                    members[String(cString: key)] = try JSON(jansson: value, what: what)
                }
                iter = json_object_iter_next(j, it)
            }
            // Swift keys compare by Unicode canonical equivalence; two keys
            // that differ only in normalization would silently become one.
            if members.count != json_object_size(j) {
                throw .json("\(what) has object keys that differ only in Unicode normalization (e.g. \"é\" and \"e\u{301}\"); use one form")
            }
            self = .object(members)
        case Int32(JSON_ARRAY.rawValue):
            let n = json_array_size(j)
            var items: [JSON] = []
            items.reserveCapacity(n)
            for i in 0..<n {
                if let item = json_array_get(j, i) { items.append(try JSON(jansson: item, what: what)) }
            }
            self = .array(items)
        case Int32(JSON_STRING.rawValue):
            let n = json_string_length(j)
            if let p = json_string_value(j) {
                self = .string(p.withMemoryRebound(to: UInt8.self, capacity: n) {
                    String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
                })
            } else {
                self = .string("")
            }
        case Int32(JSON_INTEGER.rawValue): self = .int(Int64(json_integer_value(j)))
        case Int32(JSON_REAL.rawValue): self = .double(json_real_value(j))
        case Int32(JSON_TRUE.rawValue): self = .bool(true)
        case Int32(JSON_FALSE.rawValue): self = .bool(false)
        default: self = .null
        }
    }
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
        case (.string(let x), .string(let y)): x.utf8.elementsEqual(y.utf8)
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { key, value in
                guard let i = y.index(forKey: key) else { return false }
                return y[i].key.utf8.elementsEqual(key.utf8) && y[i].value == value
            }
        default: false
        }
    }
}

/// A string hashed and compared by its UTF-8 bytes, for sets and dictionary
/// keys of user data (record ids, set elements).
package struct ExactString: Hashable, Comparable, Sendable {
    package let value: String
    package init(_ value: String) { self.value = value }
    package static func == (a: ExactString, b: ExactString) -> Bool { a.value.utf8.elementsEqual(b.value.utf8) }
    package static func < (a: ExactString, b: ExactString) -> Bool { codePointOrder(a.value, b.value) }
    package func hash(into hasher: inout Hasher) {
        for byte in value.utf8 { hasher.combine(byte) }
    }
}

// MARK: - Access

extension JSON {
    package var object: [String: JSON]? { if case .object(let o) = self { o } else { nil } }
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

// MARK: - Encoding

extension JSON {
    /// Canonical text: keys sorted by code point, no whitespace, UTF-8 as is,
    /// doubles in shortest round-trip form (the same bytes as Python's
    /// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)).
    package var text: String {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    package func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            // Non-finite values cannot be parsed in, and arithmetic producing
            // them is refused before it is stored; null keeps output valid.
            out.append(contentsOf: (d.isFinite ? d.description : "null").utf8)
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, member) in members.sorted(by: { codePointOrder($0.key, $1.key) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { bytes in
            out.append(UInt8(ascii: "\""))
            var start = 0
            for (i, byte) in bytes.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C {
                // Copy the run before the byte that needs escaping in one go.
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
                start = i + 1
                switch byte {
                case 0x22: out.append(contentsOf: [92, 34])
                case 0x5C: out.append(contentsOf: [92, 92])
                case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
                case 0x08: out.append(contentsOf: [92, UInt8(ascii: "b")])
                case 0x0C: out.append(contentsOf: [92, UInt8(ascii: "f")])
                default:
                    out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
            out.append(UInt8(ascii: "\""))
        }
    }
}

/// Code-point order of two strings (= UTF-8 byte order): the order of keys in
/// canonical JSON. Swift's `<` orders by canonical equivalence instead.
func codePointOrder(_ a: String, _ b: String) -> Bool {
    var a = a, b = b
    return a.withUTF8 { x in
        b.withUTF8 { y in
            let n = min(x.count, y.count)
            if n > 0, let px = x.baseAddress, let py = y.baseAddress {
                let c = memcmp(px, py, n)
                if c != 0 { return c < 0 }
            }
            return x.count < y.count
        }
    }
}
