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

    /// One entry's result as a device reads it, in one pass over its members.
    struct Result {
        var key: String?
        var status: String?
        var outcome: String?
        var reason: String?
        var serverSeq: Int64?
        var recordSeq: Int64?
        var resolutions: JSONObject = [:]
        var state: JSON?

        init?(_ json: JSON) {
            guard let o = json.object else { return nil }
            for (name, value) in o {
                switch name {
                case "key": key = value.string
                case "status": status = value.string
                case "outcome": outcome = value.string
                case "reason": reason = value.string
                case "server_seq": serverSeq = value.int
                case "record_seq": recordSeq = value.int
                case "resolutions": resolutions = value.object ?? [:]
                case "state": state = value
                default: break
                }
            }
        }
    }

    /// An audit row as the hub reads it, in one pass over its members.
    static func auditRow(_ json: JSON, device: String) throws(FieldSyncError) -> AuditRow {
        guard let o = json.object else { throw .arg("audit row must be an object") }
        var auditId, deviceTime, hlc: Int64?
        var actor, action, type, id, prevHash, hash: String?
        var keys: [JSON]?
        var input = JSON.null
        for (name, value) in o {
            switch name {
            case "audit_id": auditId = value.int
            case "device_time": deviceTime = value.int
            case "hlc": hlc = value.int
            case "actor": actor = value.string
            case "action": action = value.string
            case "type": type = value.string
            case "id": id = value.string
            case "prev_hash": prevHash = value.string
            case "hash": hash = value.string
            case "outbox_keys": keys = value.array
            case "input": input = value
            default: break
            }
        }
        func int(_ v: Int64?, _ k: String) throws(FieldSyncError) -> Int64 {
            guard let v else { throw .arg("audit row: \"\(k)\" must be an integer") }
            return v
        }
        func text(_ v: String?, _ k: String) throws(FieldSyncError) -> String {
            guard let v else { throw .arg("audit row: \"\(k)\" must be a string") }
            return v
        }
        guard let keys else { throw .arg("audit row: \"outbox_keys\" must be an array") }
        return AuditRow(auditId: try int(auditId, "audit_id"), deviceId: device, actor: try text(actor, "actor"),
                        action: try text(action, "action"), type: try text(type, "type"), id: try text(id, "id"), input: input,
                        deviceTime: try int(deviceTime, "device_time"), hlc: try int(hlc, "hlc"), outboxKeys: keys.compactMap(\.string),
                        prevHash: try text(prevHash, "prev_hash"), hash: try text(hash, "hash"))
    }

    static func error(_ code: String, _ message: String, device: String, batch: String, serverTime: Int64) -> JSON {
        .object([
            "protocol": .int(version), "device_id": .string(device), "batch": .string(batch),
            "server_time": .int(serverTime), "error": .object(["code": .string(code), "message": .string(message)]),
        ])
    }
}
