// A record's server-confirmed state: what the hub keeps for each record and
// what a device shadows after a pull. Values plus the metadata merge needs:
// the winning stamp of each lww-like field, the server sequence at which each
// field last changed, the tombstone, and (hub only) the live add-tags of sets.

/// Who wrote a value and when. lww orders writes by HLC stamp, then device id.
package struct Stamp: Comparable, Equatable, Sendable {
    package var hlc: Int64
    package var device: String

    package static func < (a: Stamp, b: Stamp) -> Bool {
        a.hlc != b.hlc ? a.hlc < b.hlc : codePointOrder(a.device, b.device)
    }

    var json: JSON { .array([.int(hlc), .string(device)]) }

    /// `json` as text, without building the array.
    func write(to out: inout ByteWriter) {
        out.append(UInt8(ascii: "["))
        JSON.writeInt(hlc, to: &out)
        out.append(UInt8(ascii: ","))
        JSON.writeString(device, to: &out)
        out.append(UInt8(ascii: "]"))
    }

    init(hlc: Int64, device: String) { self.hlc = hlc; self.device = device }

    init?(json: JSON?) {
        guard let pair = json?.array, pair.count == 2, let hlc = pair[0].int, let device = pair[1].string else { return nil }
        self.init(hlc: hlc, device: device)
    }
}

/// One add of a set element, as the hub remembers it: the server sequence at
/// which it was applied and the device that made it. A remove deletes the tags
/// its device had observed; tags it had not seen survive (add wins).
package struct AddTag: Equatable, Sendable {
    var seq: Int64
    var device: String
}

package struct RecordState: Equatable, Sendable {
    package var fields: JSONObject = [:]
    package var stamps: [String: Stamp] = [:]
    package var versions: [String: Int64] = [:]
    package var deleted = false
    package var deletedAt: Stamp? = nil
    /// Hub only: field -> element -> live add tags.
    package var tags: [String: [JSONElement: [AddTag]]] = [:]

    package init() {}

    /// A record the server has never shown: any write creates it.
    init(absent: Void) { deleted = true }

    /// The stored text: a device's shadow (`shadowJSON` as text, Wire/State.swift), or with
    /// `tags` everything, for the hub's own storage. Written straight from
    /// the state: states are written on every change, and building the
    /// values first cost as much as the rest of the write.
    func text(tags withTags: Bool) -> [UInt8] {
        var out = ByteWriter(capacity: 512)
        out.append("{\"deleted\":")
        out.append(deleted ? "true" : "false")
        if let deletedAt { out.append(",\"deleted_at\":"); deletedAt.write(to: &out) }
        out.append(",\"fields\":")
        JSON.object(fields).write(to: &out)
        out.append(",\"stamps\":{")
        for (i, (field, stamp)) in stamps.sorted(by: { codePointOrder($0.key, $1.key) }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(field, to: &out)
            out.append(UInt8(ascii: ":"))
            stamp.write(to: &out)
        }
        out.append(UInt8(ascii: "}"))
        if withTags && !tags.isEmpty {
            // [[element, [[seq, device], ...]], ...]: elements are values, not keys,
            // so strings that differ only in normalization stay apart.
            out.append(",\"tags\":")
            JSON.object(JSONObject(tags) { elements in
                .array(elements.sorted { $0.key < $1.key }.map { element, list in
                    .array([element.json, .array(list.map { .array([.int($0.seq), .string($0.device)]) })])
                })
            }).write(to: &out)
        }
        out.append(",\"versions\":{")
        for (i, (field, version)) in versions.sorted(by: { codePointOrder($0.key, $1.key) }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(field, to: &out)
            out.append(UInt8(ascii: ":"))
            JSON.writeInt(version, to: &out)
        }
        out.append("}}")
        return out.array
    }

    init(json: JSON) {
        fields = json["fields"]?.object ?? [:]
        stamps = (json["stamps"]?.object ?? [:]).compactMapValues { Stamp(json: $0) }
        versions = (json["versions"]?.object ?? [:]).compactMapValues(\.int)
        deleted = json["deleted"]?.bool ?? false
        deletedAt = Stamp(json: json["deleted_at"])
        for (field, elements) in json["tags"]?.object ?? [:] {
            var byElement: [JSONElement: [AddTag]] = [:]
            for entry in elements.array ?? [] {
                guard let pair = entry.array, pair.count == 2, let element = JSONElement(pair[0]), let list = pair[1].array else { continue }
                byElement[element] = list.compactMap { pair in
                    guard let p = pair.array, p.count == 2, let seq = p[0].int, let device = p[1].string else { return nil }
                    return AddTag(seq: seq, device: device)
                }
            }
            tags[field] = byElement
        }
    }
}

/// A set element (string or integer) usable as a dictionary key, compared by bytes.
package enum JSONElement: Hashable, Comparable, Sendable {
    case int(Int64)
    case string(ExactString)

    init?(_ json: JSON) {
        switch json {
        case .int(let i): self = .int(i)
        case .string(let s): self = .string(ExactString(s))
        default: return nil
        }
    }

    var json: JSON {
        switch self {
        case .int(let i): .int(i)
        case .string(let s): .string(s.value)
        }
    }

    /// Integers first, then strings by code point: the order sets are stored in.
    package static func < (a: JSONElement, b: JSONElement) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)): x < y
        case (.int, .string): true
        case (.string, .int): false
        case (.string(let x), .string(let y)): x < y
        }
    }
}
