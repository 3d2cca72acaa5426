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

    /// An outbox entry as it travels. `shadowSeq` is the version of the
    /// record's confirmed state the device holds (0: none), which lets the hub
    /// answer "own" instead of sending the state back (docs/PROTOCOL.md).
    static func entry(_ e: OutboxEntry, actor: String, shadowSeq: Int64) -> JSON {
        // Literal keys in canonical order cost the object one check, not a sort.
        var o: JSONObject = [
            "actor": .string(actor), "base": .object(e.base), "cursor": .int(e.cursor), "hlc": .int(e.hlc),
            "id": .string(e.id), "key": .string(e.key), "ops": e.change.json, "schema_version": .int(e.schemaVersion),
            "seq": .int(e.seq), "shadow_seq": .int(shadowSeq), "type": .string(e.type),
        ]
        if !e.baseValues.isEmpty { o["base_values"] = .object(e.baseValues) }
        return .object(o)
    }

    /// An audit row as it travels: only what the device decided.
    static func audit(_ row: AuditRow) -> JSON {
        .object([
            "action": .string(row.action), "actor": .string(row.actor), "audit_id": .int(row.auditId),
            "device_time": .int(row.deviceTime), "hash": .string(row.hash), "hlc": .int(row.hlc), "id": .string(row.id),
            "input": row.input, "outbox_keys": .array(row.outboxKeys.map(JSON.string)),
            "prev_hash": .string(row.prevHash), "type": .string(row.type),
        ])
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
