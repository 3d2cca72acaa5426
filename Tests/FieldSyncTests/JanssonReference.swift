// jansson as the reference our JSON parser is checked against, shared by
// JSONParserTests and the libFuzzer target (make fuzz compiles this file in).
import CJansson
@testable import FieldSync

/// jansson's reading of `bytes` as our JSON value, or nil when it refuses them.
func janssonReading(_ bytes: [UInt8]) -> JSON? {
    var error = json_error_t()
    let flags = Int(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
    let root = bytes.withUnsafeBufferPointer { buf in
        buf.baseAddress.flatMap { base in
            base.withMemoryRebound(to: CChar.self, capacity: buf.count) { json_loadb($0, buf.count, flags, &error) }
        }
    }
    guard let root else { return nil }
    defer { json_decref(root) }
    return convert(root)
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

func ourReading(_ bytes: [UInt8]) -> JSON? {
    bytes.withUnsafeBytes { raw -> JSON? in
        guard let base = raw.baseAddress else { return nil }
        return try? JSON.parse(bytes: base, count: raw.count, what: "test input")
    }
}
