// An outbox entry as it travels (docs/PROTOCOL.md "Request").

extension Wire {
    /// An outbox entry as the hub reads it, in one pass over its members
    /// (a binary search per member read cost more). Members a newer device
    /// sends and this hub does not know are ignored. `hlc` is any integer:
    /// a stamp outside what the hub believes is refused per entry
    /// ("clock_skew"), not with the whole request.
    struct Entry: Equatable {
        var key = ""
        var seq: Int64 = 0
        var type = ""
        var id = ""
        var actor = ""
        var hlc: Int64?
        var schemaVersion: Int64?
        var shadowSeq: Int64?
        var cursor: Int64 = 0
        var ops: JSON = .object([:])
        var base: JSONObject = [:]
        var baseValues: JSONObject = [:]

        init(key: String, seq: Int64, type: String, id: String) {
            self.key = key
            self.seq = seq
            self.type = type
            self.id = id
        }

        init(_ json: JSON, index: Int) throws(FieldSyncError) {
            guard let o = json.object else { throw .arg("request: entries[\(index)] must be an object, got \(json.kind)") }
            let m = Members("request: entries", index)
            var key, type, id: String?
            var seq: Int64?
            for (name, value) in o {
                switch name {
                case "key": key = try m.text(value, "key")
                case "seq": seq = try m.int(value, "seq", 1...Wire.maxSeq)
                case "type": type = try m.text(value, "type")
                case "id": id = try m.text(value, "id")
                case "actor": actor = try m.text(value, "actor") ?? ""
                case "hlc": hlc = try m.int(value, "hlc", Int64.min...Int64.max)
                case "schema_version": schemaVersion = try m.int(value, "schema_version", 1...Int64.max)
                case "shadow_seq": shadowSeq = try m.int(value, "shadow_seq", 0...Int64.max)
                case "cursor": cursor = try m.int(value, "cursor", 0...Int64.max) ?? 0
                case "ops": ops = .object(try m.object(value, "ops") ?? [:])
                case "base": base = try m.object(value, "base") ?? [:]
                case "base_values": baseValues = try m.object(value, "base_values") ?? [:]
                default: break
                }
            }
            guard let key, let seq else {
                throw .arg("request: every entry needs \"key\" = \"<device_id>-<seq>\" of the sending device and \"seq\"")
            }
            guard let type, let id else { throw .arg("request: entries[\(index)] needs \"type\" and \"id\"") }
            self.key = key
            self.seq = seq
            self.type = type
            self.id = id
        }

        /// What a legitimate resend carries unchanged (not `cursor` nor
        /// `shadow_seq`, which move between sends), as a SHA-256: the hub
        /// keeps it with its decision and refuses a key reused for other content.
        func digest() throws(FieldSyncError) -> String {
            let content: JSONObject = [
                "base": .object(base), "base_values": .object(baseValues), "hlc": hlc.map(JSON.int) ?? .null,
                "id": .string(id), "ops": ops, "schema_version": schemaVersion.map(JSON.int) ?? .null, "type": .string(type),
            ]
            return try SHA256.hex(JSON.object(content).bytes)
        }

        func write(to out: inout ByteWriter) {
            Entry.write(key: key, seq: seq, type: type, id: id, actor: actor, hlc: hlc, schemaVersion: schemaVersion,
                        cursor: cursor, shadowSeq: shadowSeq, ops: .value(ops), base: .value(.object(base)),
                        baseValues: .value(.object(baseValues)), to: &out)
        }

        /// The one writer of an entry, keys in canonical order. `shadow_seq`
        /// is the version of the record's confirmed state the device holds
        /// (0: none), which lets the hub answer "own" instead of sending the
        /// state back. An empty `base_values` is left out.
        static func write(key: String, seq: Int64, type: String, id: String, actor: String, hlc: Int64?, schemaVersion: Int64?,
                          cursor: Int64, shadowSeq: Int64?, ops: Raw, base: Raw, baseValues: Raw, to out: inout ByteWriter) {
            out.append("{\"actor\":"); JSON.writeString(actor, to: &out)
            out.append(",\"base\":"); base.write(to: &out)
            if !baseValues.isEmptyObject { out.append(",\"base_values\":"); baseValues.write(to: &out) }
            out.append(",\"cursor\":"); JSON.writeInt(cursor, to: &out)
            if let hlc { out.append(",\"hlc\":"); JSON.writeInt(hlc, to: &out) }
            out.append(",\"id\":"); JSON.writeString(id, to: &out)
            out.append(",\"key\":"); JSON.writeString(key, to: &out)
            out.append(",\"ops\":"); ops.write(to: &out)
            if let schemaVersion { out.append(",\"schema_version\":"); JSON.writeInt(schemaVersion, to: &out) }
            out.append(",\"seq\":"); JSON.writeInt(seq, to: &out)
            if let shadowSeq { out.append(",\"shadow_seq\":"); JSON.writeInt(shadowSeq, to: &out) }
            out.append(",\"type\":"); JSON.writeString(type, to: &out)
            out.append(UInt8(ascii: "}"))
        }
    }
}
