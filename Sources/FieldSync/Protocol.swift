// The wire protocol between a device and the hub (docs/PROTOCOL.md): shapes
// only. The device's request is written in Sync.swift, beside the outbox and
// audit queries whose columns it reads.

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

    /// An outbox entry as the hub reads it, in one pass over its members
    /// (a binary search per member read cost more). Members a newer device
    /// sends and this hub does not know are ignored.
    struct Entry {
        var key: String?
        var seq: Int64?
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

        init(_ json: JSON) {
            guard let o = json.object else { return }
            for (name, value) in o {
                switch name {
                case "key": key = value.string
                case "seq": seq = value.int
                case "type": type = value.string ?? ""
                case "id": id = value.string ?? ""
                case "actor": actor = value.string ?? ""
                case "hlc": hlc = value.int
                case "schema_version": schemaVersion = value.int
                case "shadow_seq": shadowSeq = value.int
                case "cursor": cursor = value.int ?? 0
                case "ops": ops = value
                case "base": base = value.object ?? [:]
                case "base_values": baseValues = value.object ?? [:]
                default: break
                }
            }
        }
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
