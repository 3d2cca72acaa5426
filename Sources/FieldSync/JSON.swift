// JSON values of the engine: parsed by our own strict RFC 8259 parser (UTF-8
// validated, duplicate keys refused), written by our own encoder so that output
// is canonical (sorted keys, no whitespace) — the audit hash depends on that.
// The parser replaced jansson on the hot paths: jansson spent ~150 instructions
// a byte and a second pass to build Swift values (BENCHMARKS.md); jansson stays
// the reference it is checked against (Tests/fuzz, JSONParserTests).
import Glibc

package enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

// MARK: - Parsing

extension JSON {
    /// Parses `count` bytes at `bytes`; any JSON value is accepted at the top.
    /// Nesting deeper than `depth` is refused before parsing starts, without
    /// recursion: parsing and every walk over a value recurse, and a host
    /// thread's stack may be 64 KiB.
    package static func parse(bytes: UnsafeRawPointer, count: Int, what: String,
                              limit: Int = Limits.maxJSONBytes, depth: Int = Limits.maxDepth) throws(FieldSyncError) -> JSON {
        if count > limit {
            throw .tooBig("\(what) is \(count) bytes; the limit is \(limit)")
        }
        var parser = JSONParser(base: bytes.assumingMemoryBound(to: UInt8.self), end: count)
        do throws(JSONParseError) {
            if let offset = deeperThan(depth, bytes: parser.base, count: count) {
                throw parser.fail("nested deeper than \(depth) levels", at: offset)
            }
            parser.skipSpace()
            let value = try parser.value()
            parser.skipSpace()
            if parser.pos < count { throw parser.fail("end of input expected after the value") }
            return value
        } catch {
            let (line, column) = parser.lineAndColumn(of: error.offset)
            throw .json("\(what) \(error.reason) (line \(line), column \(column))")
        }
    }

    package static func parse(_ text: String, what: String = "JSON text", depth: Int = Limits.maxDepth) throws(FieldSyncError) -> JSON {
        var text = text
        let result = text.withUTF8 { buf in
            Result { () throws(FieldSyncError) -> JSON in
                guard let base = buf.baseAddress, !buf.isEmpty else { throw .json("\(what) is not valid JSON: it is empty") }
                return try parse(bytes: base, count: buf.count, what: what, depth: depth)
            }
        }
        return try result.get()
    }

    /// The offset of the first '[' or '{' that opens a level deeper than
    /// `depth`, or nil. One loop over the bytes, no recursion, so it holds
    /// for any parser that runs after it. Strings are skipped as JSON reads
    /// them (a backslash takes the next byte); a closer with nothing open
    /// does not lower the count, so junk can only overestimate the depth.
    static func deeperThan(_ depth: Int, bytes base: UnsafePointer<UInt8>, count end: Int) -> Int? {
        var level = 0, pos = 0
        while pos < end {
            switch base[pos] {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                level += 1
                if level > depth { return pos }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if level > 0 { level -= 1 }
            case UInt8(ascii: "\""):
                pos += 1
                // Eight bytes at a time while none is a quote or a backslash
                // (SWAR, as in JSONParser.string).
                while end - pos >= 8 {
                    let x = UnsafeRawPointer(base + pos).loadUnaligned(as: UInt64.self)
                    let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                    let quote = x ^ (ones &* 0x22), backslash = x ^ (ones &* 0x5C)
                    if ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash) & highs != 0 { break }
                    pos += 8
                }
                while pos < end && base[pos] != UInt8(ascii: "\"") {
                    if base[pos] == UInt8(ascii: "\\") { pos += 1 }
                    pos += 1
                }
            default:
                break
            }
            pos += 1
        }
        return nil
    }
}

struct JSONParseError: Error {
    let reason: String
    let offset: Int
}

/// Recursive descent over raw bytes. Every read checks `pos < end`; the
/// depth of its recursion is bounded by `JSON.deeperThan`, run before.
struct JSONParser {
    let base: UnsafePointer<UInt8>
    let end: Int
    var pos = 0
    /// Bytes of a string that holds escapes, reused across strings.
    var scratch: [UInt8] = []
    /// Whether the last string read is its input bytes as they are (no
    /// escapes, ASCII only).
    var rawString = false

    init(base: UnsafePointer<UInt8>, end: Int) {
        self.base = base
        self.end = end
    }

    func fail(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(reason: "is not valid JSON: " + reason, offset: offset ?? pos)
    }

    func lineAndColumn(of offset: Int) -> (Int, Int) {
        var line = 1, column = 1
        for i in 0..<min(offset, end) {
            if base[i] == 0x0A { line += 1; column = 1 } else if base[i] & 0xC0 != 0x80 { column += 1 }
        }
        return (line, column)
    }

    mutating func skipSpace() {
        while pos < end {
            let b = base[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos += 1
        }
    }

    mutating func value() throws(JSONParseError) -> JSON {
        guard pos < end else { throw fail("unexpected end of input, a value expected") }
        switch base[pos] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail(unexpected("a value"))
        }
    }

    func unexpected(_ expected: String) -> String {
        guard pos < end else { return "unexpected end of input, \(expected) expected" }
        let b = base[pos]
        let shown = b >= 0x20 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
        return "unexpected \(shown), \(expected) expected"
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard end - pos >= n, memcmp(base + pos, word.utf8Start, n) == 0 else { throw fail("invalid literal, expected '\(word)'") }
        pos += n
    }

    mutating func object() throws(JSONParseError) -> JSON {
        pos += 1
        skipSpace()
        if pos < end && base[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object([:])
        }
        // Room for two members ahead, not four: four for every `{"":1}` made
        // parsing take 42 bytes of memory a byte of input; none cost 11%
        // more instructions on requests, whose objects have ten members.
        var members: [JSONObject.Element] = []
        members.reserveCapacity(2)
        // Keys without escapes are their input bytes: their order is checked
        // there, without a String comparison per member.
        var ordered = true
        var previous = (start: 0, count: -1)
        while true {
            guard pos < end, base[pos] == UInt8(ascii: "\"") else { throw fail(unexpected("a string (an object key)")) }
            let keyStart = pos + 1
            let key = try string()
            if ordered {
                let count = rawString ? pos - 1 - keyStart : -1
                ordered = count >= 0 && (members.isEmpty || rawLess(previous, (keyStart, count)))
                previous = (keyStart, count)
            }
            skipSpace()
            guard pos < end, base[pos] == UInt8(ascii: ":") else { throw fail(unexpected("':'")) }
            pos += 1
            skipSpace()
            members.append((key, try value()))
            skipSpace()
            guard pos < end else { throw fail(unexpected("',' or '}'")) }
            if base[pos] == UInt8(ascii: ",") {
                pos += 1
                skipSpace()
                continue
            }
            guard base[pos] == UInt8(ascii: "}") else { throw fail(unexpected("',' or '}'")) }
            pos += 1
            break
        }
        // Canonical order; input written by a canonical writer (ours, a
        // peer's) is sorted already and costs one pass.
        if !ordered, let key = JSONObject.sortAndDeduplicate(&members) {
            throw fail("duplicate object key \"\(key)\" in the object ending here")
        }
        return .object(JSONObject(sortedMembers: members))
    }

    mutating func array() throws(JSONParseError) -> JSON {
        pos += 1
        var items: [JSON] = []
        skipSpace()
        if pos < end && base[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            items.append(try value())
            skipSpace()
            guard pos < end else { throw fail(unexpected("',' or ']'")) }
            if base[pos] == UInt8(ascii: ",") {
                pos += 1
                skipSpace()
                continue
            }
            guard base[pos] == UInt8(ascii: "]") else { throw fail(unexpected("',' or ']'")) }
            pos += 1
            return .array(items)
        }
    }

    /// Whether the bytes at `a` come before those at `b` (code point order).
    func rawLess(_ a: (start: Int, count: Int), _ b: (start: Int, count: Int)) -> Bool {
        let n = min(a.count, b.count)
        var i = 0
        while i < n {
            let x = base[a.start + i], y = base[b.start + i]
            if x != y { return x < y }
            i += 1
        }
        return a.count < b.count
    }

    /// A string at `pos` (which holds the opening quote).
    mutating func string() throws(JSONParseError) -> String {
        pos += 1
        let start = pos
        // Fast path: printable ASCII up to the closing quote, copied once;
        // eight bytes at a time while none of them is a quote, a backslash,
        // a control character or non-ASCII (SWAR: a byte's high bit in
        // `special` marks it, for bytes below 0x80).
        while end - pos >= 8 {
            let x = UnsafeRawPointer(base + pos).loadUnaligned(as: UInt64.self)
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            let quote = x ^ (ones &* 0x22), backslash = x ^ (ones &* 0x5C)
            let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((x &- ones &* 0x20) & ~x) | x
            if special & highs != 0 { break }
            pos += 8
        }
        while pos < end {
            let b = base[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                rawString = true
                return String(decoding: UnsafeBufferPointer(start: base + start, count: pos - 1 - start), as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80 { break }
            pos += 1
        }
        rawString = false
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: base + start, count: pos - start))
        while pos < end {
            let b = base[pos]
            switch b {
            case UInt8(ascii: "\""):
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try escape()
            case 0..<0x20:
                throw fail("control character 0x\(String(b, radix: 16)) in a string (escape it)")
            case 0x80...:
                let n = try utf8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(start: base + pos, count: n))
                pos += n
            default:
                scratch.append(b)
                pos += 1
            }
        }
        throw fail("unterminated string", at: start - 1)
    }

    /// Length of the well-formed UTF-8 sequence at `pos` (RFC 3629: no
    /// overlong forms, no surrogates, nothing above U+10FFFF).
    func utf8Sequence() throws(JSONParseError) -> Int {
        let b = base[pos]
        let n: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF
        switch b {
        case 0xC2...0xDF: n = 2
        case 0xE0: n = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: n = 3
        case 0xED: n = 3; high = 0x9F
        case 0xF0: n = 4; low = 0x90
        case 0xF1...0xF3: n = 4
        case 0xF4: n = 4; high = 0x8F
        default: throw fail("invalid UTF-8 byte 0x\(String(b, radix: 16))")
        }
        guard end - pos >= n else { throw fail("truncated UTF-8 sequence") }
        let second = base[pos + 1]
        guard second >= low && second <= high else { throw fail("invalid UTF-8 sequence") }
        for i in 2..<max(n, 2) where base[pos + i] & 0xC0 != 0x80 { throw fail("invalid UTF-8 sequence") }
        return n
    }

    mutating func escape() throws(JSONParseError) {
        let at = pos
        guard end - pos >= 2 else { throw fail("unterminated string") }
        let c = base[pos + 1]
        pos += 2
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(c)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4(at: at)
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard end - pos >= 2, base[pos] == UInt8(ascii: "\\"), base[pos + 1] == UInt8(ascii: "u") else {
                    throw fail("invalid Unicode escape: high surrogate without a low one", at: at)
                }
                pos += 2
                let low = try hex4(at: at)
                guard low >= 0xDC00 && low <= 0xDFFF else { throw fail("invalid Unicode escape: high surrogate without a low one", at: at) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw fail("invalid Unicode escape: lone low surrogate", at: at)
            }
            // NUL would cut the text short for every C caller downstream.
            if scalar == 0 { throw fail("\\u0000 is not allowed in strings", at: at) }
            appendUTF8(scalar)
        default:
            throw fail("invalid escape '\\\(Character(Unicode.Scalar(c)))'", at: at)
        }
    }

    /// A scalar value already checked to be one (not a surrogate, <= U+10FFFF).
    mutating func appendUTF8(_ v: UInt32) {
        switch v {
        case ..<0x80: scratch.append(UInt8(v))
        case ..<0x800: scratch.append(contentsOf: [UInt8(0xC0 | v >> 6), UInt8(0x80 | v & 0x3F)])
        case ..<0x10000:
            scratch.append(contentsOf: [UInt8(0xE0 | v >> 12), UInt8(0x80 | v >> 6 & 0x3F), UInt8(0x80 | v & 0x3F)])
        default:
            scratch.append(contentsOf: [UInt8(0xF0 | v >> 18), UInt8(0x80 | v >> 12 & 0x3F),
                                        UInt8(0x80 | v >> 6 & 0x3F), UInt8(0x80 | v & 0x3F)])
        }
    }

    mutating func hex4(at: Int) throws(JSONParseError) -> UInt32 {
        guard end - pos >= 4 else { throw fail("invalid Unicode escape", at: at) }
        var v: UInt32 = 0
        for i in 0..<4 {
            let b = base[pos + i]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw fail("invalid Unicode escape", at: at)
            }
            v = v << 4 | UInt32(d)
        }
        pos += 4
        return v
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: an integer when it has
    /// neither fraction nor exponent (and fits in 64 bits), else a double.
    mutating func number() throws(JSONParseError) -> JSON {
        let start = pos
        let negative = base[pos] == UInt8(ascii: "-")
        if negative { pos += 1 }
        func isDigit(_ i: Int) -> Bool { i < end && base[i] >= UInt8(ascii: "0") && base[i] <= UInt8(ascii: "9") }
        guard isDigit(pos) else { throw fail("invalid number", at: start) }
        var magnitude: UInt64 = 0
        var overflow = false
        if base[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) { throw fail("invalid number (leading zero)", at: start) }
        } else {
            while isDigit(pos) {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(base[pos] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = a
                pos += 1
            }
        }
        var real = false
        if pos < end && base[pos] == UInt8(ascii: ".") {
            pos += 1
            guard isDigit(pos) else { throw fail("invalid number (digits expected after '.')", at: start) }
            while isDigit(pos) { pos += 1 }
            real = true
        }
        if pos < end && (base[pos] == UInt8(ascii: "e") || base[pos] == UInt8(ascii: "E")) {
            pos += 1
            if pos < end && (base[pos] == UInt8(ascii: "+") || base[pos] == UInt8(ascii: "-")) { pos += 1 }
            guard isDigit(pos) else { throw fail("invalid number (digits expected in the exponent)", at: start) }
            while isDigit(pos) { pos += 1 }
            real = true
        }
        if !real {
            let limit: UInt64 = negative ? UInt64(Int64.max) + 1 : UInt64(Int64.max)
            if overflow || magnitude > limit { throw fail("integer out of the 64-bit range", at: start) }
            return .int(negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude))
        }
        // Double(_:) parses the C locale's way whatever the host's locale is.
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: pos - start), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw fail("number out of the range of a double", at: start) }
        return .double(d)
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

// MARK: - Encoding

extension JSON {
    /// Canonical text: keys sorted by code point, no whitespace, UTF-8 as is,
    /// doubles in shortest round-trip form (the same bytes as Python's
    /// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)).
    package var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The canonical text as UTF-8 bytes.
    package var bytes: [UInt8] { writer.array }

    /// The canonical text in a fresh buffer.
    package var writer: ByteWriter {
        var out = ByteWriter()
        write(to: &out)
        return out
    }

    package func write(to out: inout ByteWriter) {
        switch self {
        case .null: out.append("null")
        case .bool(let b): out.append(b ? "true" : "false")
        case .int(let i): JSON.writeInt(i, to: &out)
        case .double(let d):
            // Non-finite values cannot be parsed in, and arithmetic producing
            // them is refused before it is stored; null keeps output valid.
            if !d.isFinite {
                out.append("null")
            } else if d.magnitude > 9007199254740992.0 && d.magnitude < 1e16 {
                // Whole numbers all; Swift writes them with an exponent from
                // 2^53 on, Python (the canonical form) only from 1e16 on.
                JSON.writeInt(Int64(d), to: &out)
                out.append(".0")
            } else {
                out.append(contentsOf: d.description)
            }
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            var first = true
            for item in items {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            var first = true
            for member in object.members {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSON.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Decimal digits of `value`, without building a String first.
    static func writeInt(_ value: Int64, to out: inout ByteWriter) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var n = 0
            repeat {
                digits[19 - n] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 48
                magnitude /= 10
                n += 1
            } while magnitude > 0
            out.append(UnsafeBufferPointer(rebasing: digits[(20 - n)...]))
        }
    }

    static func writeString(_ s: String, to out: inout ByteWriter) {
        var s = s
        s.withUTF8 { bytes in
            // Most strings need no escape: quotes and bytes in one pass.
            let plain = out.append(reserving: bytes.count &+ 2) { p in
                p[0] = UInt8(ascii: "\"")
                for i in 0..<bytes.count {
                    let byte = bytes[i]
                    if byte < 0x20 || byte == 0x22 || byte == 0x5C { return nil }
                    p[i &+ 1] = byte
                }
                p[bytes.count &+ 1] = UInt8(ascii: "\"")
                return bytes.count &+ 2
            }
            if plain { return }
            out.append(UInt8(ascii: "\""))
            guard let base = bytes.baseAddress else { return }
            var start = 0
            for i in 0..<bytes.count {
                let byte = base[i]
                guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
                // Copy the run before the byte that needs escaping in one go.
                if i > start { out.append(UnsafeBufferPointer(start: base + start, count: i - start)) }
                start = i + 1
                escape(byte, to: &out)
            }
            if bytes.count > start { out.append(UnsafeBufferPointer(start: base + start, count: bytes.count - start)) }
            out.append(UInt8(ascii: "\""))
        }
    }

    private static func escape(_ byte: UInt8, to out: inout ByteWriter) {
        out.append(92)
        switch byte {
        case 0x22: out.append(34)
        case 0x5C: out.append(92)
        case 0x0A: out.append(UInt8(ascii: "n"))
        case 0x0D: out.append(UInt8(ascii: "r"))
        case 0x09: out.append(UInt8(ascii: "t"))
        case 0x08: out.append(UInt8(ascii: "b"))
        case 0x0C: out.append(UInt8(ascii: "f"))
        default:
            let digits: StaticString = "0123456789abcdef"
            out.append("u00")
            out.append(digits.utf8Start[Int(byte >> 4)])
            out.append(digits.utf8Start[Int(byte & 15)])
        }
    }
}

/// Code-point order of two strings (= UTF-8 byte order): the order of keys in
/// canonical JSON. Swift's `<` orders by canonical equivalence instead.
func codePointOrder(_ a: String, _ b: String) -> Bool { compareUTF8(a, b) < 0 }
