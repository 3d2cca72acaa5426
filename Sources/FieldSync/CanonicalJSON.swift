// The canonical JSON writer: keys in code point order, no whitespace, UTF-8 as
// is, doubles in their shortest round-trip form. Audit hashes, entry digests
// and every stored text depend on these exact bytes (docs/AUDIT.md), which is
// why jansson, which writes doubles with 17 significant digits and keeps keys
// in insertion order, writes none of them.

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
            // Through the buffer: the elements are borrowed, not copied
            // (a retain and a release each).
            items.withUnsafeBufferPointer { items in
                for i in items.indices {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    items[i].write(to: &out)
                }
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            object.members.withUnsafeBufferPointer { members in
                for i in members.indices {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    JSON.writeString(members[i].key, to: &out)
                    out.append(UInt8(ascii: ":"))
                    members[i].value.write(to: &out)
                }
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
        // Native strings (the engine's) are read in place; others copied once.
        if s.utf8.withContiguousStorageIfAvailable({ writeUTF8($0, to: &out) }) != nil { return }
        var s = s
        s.withUTF8 { writeUTF8($0, to: &out) }
    }

    private static func writeUTF8(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout ByteWriter) {
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
