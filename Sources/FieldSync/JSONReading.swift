// Every JSON text the engine reads is read by jansson (`json_loadb`):
// arguments of the C doors, sync messages, resolver answers and the texts the
// engine stored itself. What jansson does not check for us is
// checked around it here, so the rules of docs/ABI.md hold whoever parses:
// the size, a NUL byte (jansson would read a C string only to it), the
// nesting depth, by a scan before jansson runs, because jansson recurses once
// per level and a host thread's stack may be 64 KiB, and repeated keys.
import CJansson
import Glibc

extension JSON {
    /// Parses `count` bytes at `bytes`; any JSON value is accepted at the top.
    package static func parse(bytes: UnsafeRawPointer, count: Int, what: String,
                              limit: Int = Limits.maxJSONBytes, depth: Int = Limits.maxDepth) throws(FieldSyncError) -> JSON {
        if count > limit {
            throw .tooBig("\(what) is \(count) bytes; the limit is \(limit)")
        }
        let base = bytes.assumingMemoryBound(to: UInt8.self)
        func refuse(_ reason: String, at offset: Int) -> FieldSyncError {
            let (line, column) = lineAndColumn(of: offset, in: base, count: count)
            return .json("\(what) is not valid JSON: \(reason) (line \(line), column \(column))")
        }
        if count == 0 { throw .json("\(what) is not valid JSON: it is empty") }
        if let nul = memchr(bytes, 0, count) {
            throw refuse("a NUL byte", at: bytes.distance(to: UnsafeRawPointer(nul)))
        }
        let scan = Scan(bytes: base, count: count, depth: depth)
        if let offset = scan.tooDeepAt {
            throw refuse("nested deeper than \(depth) levels", at: offset)
        }
        // Without JSON_REJECT_DUPLICATES (a second hash lookup per key),
        // jansson keeps the last of repeated keys; the scan counted every
        // member, so a repeat shows as a member missing from the tree, and
        // only then is the text parsed again to have jansson name it.
        var error = json_error_t()
        let text = bytes.assumingMemoryBound(to: CChar.self)
        func failure() -> FieldSyncError {
            // jansson's words, except where they name one of its flags.
            let reason = json_error_code(&error) == json_error_null_character
                ? "\\u0000 is not allowed in strings"
                : withUnsafeBytes(of: error.text) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return refuse(reason, at: max(0, Int(error.position) - 1))
        }
        guard let root = json_loadb(text, count, Int(JSON_DECODE_ANY), &error) else { throw failure() }
        defer { json_decref(root) }
        // Releasing jansson's tree while converting pays for texts whose
        // tree is large; for small ones it is only calls.
        var reader = TreeReader(releasing: count > TreeReader.releaseAbove)
        let value = reader.value(of: root)
        if reader.members != scan.members {
            if let strict = json_loadb(text, count, Int(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES), &error) {
                json_decref(strict)
                throw .json("\(what) is not valid JSON: a key is repeated in one object")
            }
            throw failure()
        }
        return value
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

    /// Line and column (in characters, from 1) of the byte at `offset`.
    static func lineAndColumn(of offset: Int, in base: UnsafePointer<UInt8>, count: Int) -> (Int, Int) {
        var line = 1, column = 1
        for i in 0..<min(offset, count) {
            if base[i] == 0x0A { line += 1; column = 1 } else if base[i] & 0xC0 != 0x80 { column += 1 }
        }
        return (line, column)
    }

}

/// One loop over the bytes before jansson runs, no recursion: the offset of
/// the first '[' or '{' that opens a level deeper than the limit, and the
/// number of object members (colons outside strings). Strings are skipped as
/// JSON reads them (a backslash takes the next byte); a closer with nothing
/// open does not lower the count, so junk can only overestimate the depth.
struct Scan {
    var tooDeepAt: Int?
    var members = 0

    init(bytes base: UnsafePointer<UInt8>, count end: Int, depth: Int) {
        var level = 0, pos = 0
        while pos < end {
            switch base[pos] {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                level += 1
                if level > depth { tooDeepAt = pos; return }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if level > 0 { level -= 1 }
            case UInt8(ascii: ":"):
                members += 1
            case UInt8(ascii: "\""):
                pos += 1
                // Eight bytes at a time while none is a quote or a backslash
                // (SWAR: a byte's high bit in the mask marks a match).
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
    }
}

/// jansson's value as ours. Recursion is bounded by the depth scan that ran
/// before parsing. jansson has checked the UTF-8 of every string and key,
/// refused `\u0000`, lone surrogates and numbers out of range, so nothing here
/// can fail. When `releasing`, each child is released as soon as it is
/// converted (replaced by jansson's static null, which allocates nothing), so
/// the two trees never both exist whole: memory peaks at jansson's tree, not
/// at the sum (docs/ABI.md's bound per byte).
struct TreeReader {
    static let releaseAbove = 64 * 1024
    let releasing: Bool
    /// Object members read, against the scan's count.
    var members = 0

    init(releasing: Bool) { self.releasing = releasing }

    /// One member of a jansson object, by jansson's pointers.
    struct Member {
        let key: UnsafePointer<CChar>, count: Int
        let value: UnsafeMutablePointer<json_t>, iter: UnsafeMutableRawPointer

        /// Byte order of the keys (= code point order); jansson's are unique.
        func precedes(_ other: Member) -> Bool {
            let c = memcmp(key, other.key, Swift.min(count, other.count))
            return c < 0 || (c == 0 && count < other.count)
        }
    }

    mutating func value(of j: UnsafeMutablePointer<json_t>) -> JSON {
        switch fs_json_type(j) {
        case Int32(JSON_OBJECT.rawValue):
            // jansson keeps insertion order and one entry per key; canonical
            // writers (ours, a peer's) send sorted keys, others (hosts) often
            // do not. The order is checked, and if need be made, on jansson's
            // key bytes, before any String exists: no String comparisons.
            let n = json_object_size(j)
            return withUnsafeTemporaryAllocation(of: Member.self, capacity: Swift.max(n, 1)) { buf in
                var k = 0, ordered = true
                var iter = json_object_iter(j)
                while let it = iter, k < n {
                    if let key = json_object_iter_key(it), let item = json_object_iter_value(it) {
                        let m = Member(key: key, count: json_object_iter_key_len(it), value: item, iter: it)
                        if ordered && k > 0 { ordered = buf[k - 1].precedes(m) }
                        buf.initializeElement(at: k, to: m)
                        k += 1
                    }
                    iter = json_object_iter_next(j, it)
                }
                var found = UnsafeMutableBufferPointer(rebasing: buf[0..<k])
                if !ordered { found.sort { $0.precedes($1) } }
                var items: [JSONObject.Element] = []
                items.reserveCapacity(k)
                for m in found {
                    let name = m.key.withMemoryRebound(to: UInt8.self, capacity: 1) {
                        String(decoding: UnsafeBufferPointer(start: $0, count: m.count), as: UTF8.self)
                    }
                    items.append((name, value(of: m.value)))
                    if releasing { json_object_iter_set_new(j, m.iter, json_null()) }
                }
                found.deinitialize()
                members &+= k  // safe: at most one member per byte of text
                return .object(JSONObject(sortedMembers: items))
            }
        case Int32(JSON_ARRAY.rawValue):
            let n = json_array_size(j)
            var items: [JSON] = []
            items.reserveCapacity(n)
            for i in 0..<n {
                if let item = json_array_get(j, i) {
                    items.append(value(of: item))
                    if releasing { json_array_set_new(j, i, json_null()) }
                }
            }
            return .array(items)
        case Int32(JSON_STRING.rawValue):
            guard let p = json_string_value(j) else { return .string("") }
            return .string(p.withMemoryRebound(to: UInt8.self, capacity: 1) {
                String(decoding: UnsafeBufferPointer(start: $0, count: json_string_length(j)), as: UTF8.self)
            })
        case Int32(JSON_INTEGER.rawValue): return .int(Int64(json_integer_value(j)))
        case Int32(JSON_REAL.rawValue): return .double(json_real_value(j))
        case Int32(JSON_TRUE.rawValue): return .bool(true)
        case Int32(JSON_FALSE.rawValue): return .bool(false)
        default: return .null
        }
    }
}
