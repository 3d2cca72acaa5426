// The wire protocol between a device and the hub (docs/PROTOCOL.md). Only
// shapes live here: building and reading requests and responses.

enum Wire {
    /// The protocol version this library speaks. A hub answers any version
    /// from 1 up to this one; a device refuses responses it cannot read.
    static let version: Int64 = 1

    static func batchId(device: String, number: Int64) -> String { "\(device)-b\(number)" }

    static func batchNumber(_ batch: String, device: String) -> Int64? {
        let prefix = device + "-b"
        guard batch.hasPrefix(prefix), let n = Int64(batch.dropFirst(prefix.count)), n > 0 else { return nil }
        return n
    }

    /// An outbox entry as it travels, written from a row of Store.dueEntries.
    /// `shadow_seq` is the version of the record's confirmed state the
    /// device holds (0: none), which lets the hub answer "own" instead of
    /// sending the state back (docs/PROTOCOL.md). Keys in canonical order.
    static func writeEntry(_ r: Statement, key: String, type: String, id: String, to out: inout ByteWriter) {
        out.append("{\"actor\":"); JSON.writeString(r.optionalText(11) ?? "", to: &out)
        out.append(",\"base\":"); r.writeJSON(6, opening: UInt8(ascii: "{"), orElse: "{}", to: &out)
        if !r.isNull(10), !r.textEquals(10, "{}") {
            out.append(",\"base_values\":"); r.writeJSON(10, opening: UInt8(ascii: "{"), orElse: "{}", to: &out)
        }
        out.append(",\"cursor\":"); JSON.writeInt(r.int(7), to: &out)
        out.append(",\"hlc\":"); JSON.writeInt(r.int(3), to: &out)
        out.append(",\"id\":"); JSON.writeString(id, to: &out)
        out.append(",\"key\":"); JSON.writeString(key, to: &out)
        out.append(",\"ops\":"); r.writeJSON(5, opening: UInt8(ascii: "{"), orElse: "{}", to: &out)
        out.append(",\"schema_version\":"); JSON.writeInt(r.int(4), to: &out)
        out.append(",\"seq\":"); JSON.writeInt(r.int(0), to: &out)
        out.append(",\"shadow_seq\":"); JSON.writeInt(r.optionalInt(12) ?? 0, to: &out)
        out.append(",\"type\":"); JSON.writeString(type, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// An audit row as it travels (only what the device decided), written
    /// from a row of Store.unackedAudit. Keys in canonical order.
    static func writeAudit(_ r: Statement, to out: inout ByteWriter) {
        out.append("{\"action\":"); JSON.writeString(r.text(2), to: &out)
        out.append(",\"actor\":"); JSON.writeString(r.text(1), to: &out)
        out.append(",\"audit_id\":"); JSON.writeInt(r.int(0), to: &out)
        out.append(",\"device_time\":"); JSON.writeInt(r.int(6), to: &out)
        out.append(",\"hash\":"); JSON.writeString(r.text(10), to: &out)
        out.append(",\"hlc\":"); JSON.writeInt(r.int(7), to: &out)
        out.append(",\"id\":"); JSON.writeString(r.text(4), to: &out)
        out.append(",\"input\":"); r.writeJSON(5, opening: nil, orElse: "null", to: &out)
        out.append(",\"outbox_keys\":"); r.writeJSON(8, opening: UInt8(ascii: "["), orElse: "[]", to: &out)
        out.append(",\"prev_hash\":"); JSON.writeString(r.text(9), to: &out)
        out.append(",\"type\":"); JSON.writeString(r.text(3), to: &out)
        out.append(UInt8(ascii: "}"))
    }

    static func auditRow(_ json: JSON, device: String) throws(FieldSyncError) -> AuditRow {
        guard let o = json.object else { throw .arg("audit row must be an object") }
        func int(_ k: String) throws(FieldSyncError) -> Int64 {
            guard let v = o[k]?.int else { throw .arg("audit row: \"\(k)\" must be an integer") }
            return v
        }
        func text(_ k: String) throws(FieldSyncError) -> String {
            guard let v = o[k]?.string else { throw .arg("audit row: \"\(k)\" must be a string") }
            return v
        }
        guard let keys = o["outbox_keys"]?.array else { throw .arg("audit row: \"outbox_keys\" must be an array") }
        return AuditRow(auditId: try int("audit_id"), deviceId: device, actor: try text("actor"), action: try text("action"),
                        type: try text("type"), id: try text("id"), input: o["input"] ?? .null,
                        deviceTime: try int("device_time"), hlc: try int("hlc"), outboxKeys: keys.compactMap(\.string),
                        prevHash: try text("prev_hash"), hash: try text("hash"))
    }

    static func error(_ code: String, _ message: String, device: String, batch: String, serverTime: Int64) -> JSON {
        .object([
            "protocol": .int(version), "device_id": .string(device), "batch": .string(batch),
            "server_time": .int(serverTime), "error": .object(["code": .string(code), "message": .string(message)]),
        ])
    }
}
