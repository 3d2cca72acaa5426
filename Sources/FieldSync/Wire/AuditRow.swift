// An audit row as it travels (docs/PROTOCOL.md "Request", "Versions").

extension Wire {
    /// An audit row as the hub reads it, in one pass over its members.
    /// `device_time` and `hlc` may be any integer: the hub stores them and
    /// checks the row's hash over them, and never computes with them.
    /// `entries` (protocol 2 and later) are the request's entries by seq:
    /// a row travelling with its entry (same seq) may leave out `actor`,
    /// `hlc`, `id`, `outbox_keys` and `type`, which are then the entry's
    /// (`outbox_keys`: its key). `previousHash` (protocol 2 and later) is
    /// the hash of the row before it in the request: a row without
    /// `prev_hash` chains to it.
    static func auditRow(_ json: JSON, device: String, index: Int, entries: [Int64: Entry]?,
                         previousHash: String? = nil) throws(FieldSyncError) -> AuditRow {
        guard let o = json.object else { throw .arg("request: audit[\(index)] must be an object, got \(json.kind)") }
        let m = Members("request: audit", index)
        var auditId, deviceTime, hlc: Int64?
        var actor, action, type, id, prevHash, hash: String?
        var keys: [JSON]?
        var input = JSON.null
        // Which of the members an entry can stand for are present (one bit
        // each: actor, hlc, id, outbox_keys, type): only an absent one is its entry's.
        var present: UInt8 = 0
        for (name, value) in o {
            switch name {
            case "audit_id": auditId = try m.int(value, "audit_id", 1...Wire.maxSeq)
            case "device_time": deviceTime = try m.int(value, "device_time", Int64.min...Int64.max)
            case "hlc": hlc = try m.int(value, "hlc", Int64.min...Int64.max); present |= 2
            case "actor": actor = try m.text(value, "actor"); present |= 1
            case "action": action = try m.text(value, "action")
            case "type": type = try m.text(value, "type"); present |= 16
            case "id": id = try m.text(value, "id"); present |= 4
            case "prev_hash": prevHash = try m.text(value, "prev_hash")
            case "hash": hash = try m.text(value, "hash")
            case "outbox_keys": keys = value.array; present |= 8
            case "input": input = value
            default: break
            }
        }
        if present != 31, let auditId, let entry = entries?[auditId] {
            if present & 1 == 0 { actor = entry.actor }
            if present & 2 == 0 { hlc = entry.hlc }
            if present & 4 == 0 { id = entry.id }
            if present & 8 == 0 { keys = [.string(entry.key)] }
            if present & 16 == 0 { type = entry.type }
        }
        if prevHash == nil { prevHash = previousHash }
        func int(_ v: Int64?, _ k: String) throws(FieldSyncError) -> Int64 {
            guard let v else { throw .arg("request: audit[\(index)]: \"\(k)\" must be an integer") }
            return v
        }
        func text(_ v: String?, _ k: String) throws(FieldSyncError) -> String {
            guard let v else { throw .arg("request: audit[\(index)]: \"\(k)\" must be a string") }
            return v
        }
        guard let keys else { throw .arg("request: audit[\(index)]: \"outbox_keys\" must be an array") }
        if keys.count > maxOutboxKeys { throw .arg("request: audit[\(index)]: \"outbox_keys\" holds \(keys.count) keys; at most \(maxOutboxKeys)") }
        var outboxKeys: [String] = []
        for key in keys { outboxKeys.append(try m.requiredText(key, "outbox_keys")) }
        return AuditRow(auditId: try int(auditId, "audit_id"), deviceId: device, actor: try text(actor, "actor"),
                        action: try text(action, "action"), type: try text(type, "type"), id: try text(id, "id"), input: input,
                        deviceTime: try int(deviceTime, "device_time"), hlc: try int(hlc, "hlc"), outboxKeys: outboxKeys,
                        prevHash: try text(prevHash, "prev_hash"), hash: try text(hash, "hash"))
    }

    /// The one writer of an audit row as it travels (only what the device
    /// decided), keys in canonical order. `compact` leaves out what the
    /// row's entry in the same request carries (actor, hlc, id, outbox_keys,
    /// type); `chained` leaves out `prev_hash`, the hash of the row written
    /// just before it in the same request (both protocol 2).
    static func writeAudit(auditId: Int64, actor: String, action: String, type: String, id: String, input: Raw,
                           deviceTime: Int64, hlc: Int64, outboxKeys: Raw, prevHash: String, hash: String, compact: Bool,
                           chained: Bool, to out: inout ByteWriter) {
        out.append("{\"action\":"); JSON.writeString(action, to: &out)
        if !compact { out.append(",\"actor\":"); JSON.writeString(actor, to: &out) }
        out.append(",\"audit_id\":"); JSON.writeInt(auditId, to: &out)
        out.append(",\"device_time\":"); JSON.writeInt(deviceTime, to: &out)
        out.append(",\"hash\":"); JSON.writeString(hash, to: &out)
        if !compact {
            out.append(",\"hlc\":"); JSON.writeInt(hlc, to: &out)
            out.append(",\"id\":"); JSON.writeString(id, to: &out)
        }
        out.append(",\"input\":"); input.write(to: &out)
        if !compact { out.append(",\"outbox_keys\":"); outboxKeys.write(to: &out) }
        if !chained { out.append(",\"prev_hash\":"); JSON.writeString(prevHash, to: &out) }
        if !compact { out.append(",\"type\":"); JSON.writeString(type, to: &out) }
        out.append(UInt8(ascii: "}"))
    }

    /// What an entry says of its audit row: `keys` is `[key]` as the row stores it.
    typealias EntryOfRow = (type: String, id: String, hlc: Int64, actor: String, keys: [UInt8])

    static func entryOfRow(key: String, type: String, id: String, hlc: Int64, actor: String) -> EntryOfRow {
        (type, id, hlc, actor, AuditLog.keysText([key]))
    }

    /// Whether protocol 2 may leave those five members out of a row: the
    /// request carries `entry` (the row's own seq) and the row repeats it exactly.
    static func rowRepeats(_ entry: EntryOfRow, actor: String, type: String, id: String, hlc: Int64,
                           outboxKeys: UnsafeBufferPointer<UInt8>?) -> Bool {
        hlc == entry.hlc && equalUTF8(type, entry.type) && equalUTF8(id, entry.id) && equalUTF8(actor, entry.actor)
            && outboxKeys.map { $0.elementsEqual(entry.keys) } == true
    }
}

extension AuditRow {
    /// As it travels (`Wire.writeAudit`).
    func write(compact: Bool, chained: Bool, to out: inout ByteWriter) {
        Wire.writeAudit(auditId: auditId, actor: actor, action: action, type: type, id: id, input: .value(input),
                        deviceTime: deviceTime, hlc: hlc, outboxKeys: .value(.array(outboxKeys.map(JSON.string))),
                        prevHash: prevHash, hash: hash, compact: compact, chained: chained, to: &out)
    }
}
