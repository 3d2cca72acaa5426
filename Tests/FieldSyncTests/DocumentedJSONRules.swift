// The JSON rules of docs/ABI.md as an oracle, for JSONRulesTests and the
// libFuzzer target (make fuzz compiles this file in). jansson in its most
// lenient mode says what is JSON at all; each documented rule is then
// checked on its own, on the value read: a raw NUL byte, nesting past the
// limit, "\u0000" in a string or key, a key repeated in one object. The
// library must accept exactly the rest, and read the same value.
import CJansson
import Glibc
@testable import FieldSync

enum DocumentedReading: Equatable {
    case value(JSON)
    case refused(String)
}

func documentedReading(_ bytes: [UInt8], depth: Int = Limits.maxDepth) -> DocumentedReading {
    if bytes.contains(0) { return .refused("NUL byte") }
    guard let lax = jansson(bytes, Int(JSON_DECODE_ANY | JSON_ALLOW_NUL)) else { return .refused("not JSON") }
    defer { json_decref(lax) }
    if nesting(lax) > depth { return .refused("nested deeper than \(depth)") }
    if holdsNUL(lax) { return .refused("\\u0000") }
    guard let strict = jansson(bytes, Int(JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)) else {
        return .refused("duplicate key")
    }
    json_decref(strict)
    return .value(convert(lax))
}

/// What the library reads from `bytes`, as the oracle says it.
func libraryReading(_ bytes: [UInt8], depth: Int = Limits.maxDepth) -> DocumentedReading {
    bytes.withUnsafeBytes { raw -> DocumentedReading in
        guard let base = raw.baseAddress, !raw.isEmpty else { return .refused("empty") }
        do throws(FieldSyncError) {
            return .value(try JSON.parse(bytes: base, count: raw.count, what: "test input", depth: depth))
        } catch {
            return .refused(error.message)
        }
    }
}

/// Whether the library's reading is the documented one (refusals need not
/// give the same reason: a text can break several rules).
func agrees(_ library: DocumentedReading, _ documented: DocumentedReading) -> Bool {
    switch (library, documented) {
    case (.refused, .refused): true
    case (.value(let a), .value(let b)): a == b
    default: false
    }
}

private func jansson(_ bytes: [UInt8], _ flags: Int) -> UnsafeMutablePointer<json_t>? {
    var error = json_error_t()
    return bytes.withUnsafeBufferPointer { buf in
        buf.baseAddress.flatMap { base in
            base.withMemoryRebound(to: CChar.self, capacity: buf.count) { json_loadb($0, buf.count, flags, &error) }
        }
    }
}

private func children(_ j: UnsafeMutablePointer<json_t>) -> [UnsafeMutablePointer<json_t>] {
    switch fs_json_type(j) {
    case Int32(JSON_OBJECT.rawValue):
        var out: [UnsafeMutablePointer<json_t>] = []
        var iter = json_object_iter(j)
        while let it = iter {
            if let value = json_object_iter_value(it) { out.append(value) }
            iter = json_object_iter_next(j, it)
        }
        return out
    case Int32(JSON_ARRAY.rawValue):
        return (0..<json_array_size(j)).compactMap { json_array_get(j, $0) }
    default:
        return []
    }
}

private func nesting(_ j: UnsafeMutablePointer<json_t>) -> Int {
    let type = fs_json_type(j)
    guard type == Int32(JSON_OBJECT.rawValue) || type == Int32(JSON_ARRAY.rawValue) else { return 0 }
    return 1 + (children(j).map(nesting).max() ?? 0)
}

private func holdsNUL(_ j: UnsafeMutablePointer<json_t>) -> Bool {
    if fs_json_type(j) == Int32(JSON_STRING.rawValue), let p = json_string_value(j) {
        return strlen(p) != json_string_length(j)
    }
    if fs_json_type(j) == Int32(JSON_OBJECT.rawValue) {
        var iter = json_object_iter(j)
        while let it = iter {
            if let key = json_object_iter_key(it), strlen(key) != json_object_iter_key_len(it) { return true }
            iter = json_object_iter_next(j, it)
        }
    }
    return children(j).contains(where: holdsNUL)
}

private func convert(_ j: UnsafeMutablePointer<json_t>) -> JSON {
    switch fs_json_type(j) {
    case Int32(JSON_OBJECT.rawValue):
        var members = JSONObject()
        var iter = json_object_iter(j)
        while let it = iter {
            if let key = json_object_iter_key(it), let value = json_object_iter_value(it) {
                members[String(cString: key)] = convert(value)
            }
            iter = json_object_iter_next(j, it)
        }
        return .object(members)
    case Int32(JSON_ARRAY.rawValue):
        return .array((0..<json_array_size(j)).compactMap { json_array_get(j, $0).map(convert) })
    case Int32(JSON_STRING.rawValue):
        let n = json_string_length(j)
        guard let p = json_string_value(j) else { return .string("") }
        return .string(p.withMemoryRebound(to: UInt8.self, capacity: n) {
            String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
        })
    case Int32(JSON_INTEGER.rawValue): return .int(Int64(json_integer_value(j)))
    case Int32(JSON_REAL.rawValue): return .double(json_real_value(j))
    case Int32(JSON_TRUE.rawValue): return .bool(true)
    case Int32(JSON_FALSE.rawValue): return .bool(false)
    default: return .null
    }
}
