// The audit trail (docs/AUDIT.md): one row per action, chained by
// SHA-256 over the previous hash and the row's canonical content.

package struct AuditRow: Equatable, Sendable {
    package var auditId: Int64
    package var deviceId: String
    package var actor: String
    package var action: String
    package var type: String
    package var id: String
    package var input: JSON
    package var deviceTime: Int64
    package var hlc: Int64
    package var outboxKeys: [String]
    package var prevHash: String
    package var hash: String
    package var outcome: String = "pending"
    package var reason: String? = nil
    package var serverReceivedAt: Int64? = nil

    package static let genesis = String(repeating: "0", count: 64)

    /// The fields the hash covers: everything the device decided, nothing sync
    /// adds. Written field by field in sorted key order, which is exactly the
    /// canonical JSON of docs/AUDIT.md, without building an object first.
    func canonicalText(input inputText: [UInt8]? = nil, after prefix: String = "") -> ByteWriter {
        var out = ByteWriter(capacity: prefix.utf8.count + 256 + (inputText?.count ?? 64))
        out.append(contentsOf: prefix)
        out.append("{\"action\":"); JSON.writeString(action, to: &out)
        out.append(",\"actor\":"); JSON.writeString(actor, to: &out)
        out.append(",\"audit_id\":"); JSON.writeInt(auditId, to: &out)
        out.append(",\"device_id\":"); JSON.writeString(deviceId, to: &out)
        out.append(",\"device_time\":"); JSON.writeInt(deviceTime, to: &out)
        out.append(",\"hlc\":"); JSON.writeInt(hlc, to: &out)
        out.append(",\"id\":"); JSON.writeString(id, to: &out)
        out.append(",\"input\":")
        if let inputText { out.append(inputText) } else { input.write(to: &out) }
        out.append(",\"outbox_keys\":"); AuditRow.writeKeys(outboxKeys, to: &out)
        out.append(",\"type\":"); JSON.writeString(type, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `outbox_keys` as JSON text: an array of strings.
    static func writeKeys(_ keys: [String], to out: inout ByteWriter) {
        out.append(UInt8(ascii: "["))
        for (i, key) in keys.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(key, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    package func computedHash(input inputText: [UInt8]? = nil) throws(FieldSyncError) -> String {
        let text = canonicalText(input: inputText, after: prevHash)
        return try text.withBytes { (bytes) throws(FieldSyncError) -> String in try SHA256.hex(bytes) }
    }

    package var json: JSON {
        .object([
            "audit_id": .int(auditId), "device_id": .string(deviceId), "actor": .string(actor),
            "action": .string(action), "type": .string(type), "id": .string(id), "input": input,
            "device_time": .int(deviceTime), "hlc": .int(hlc),
            "outbox_keys": .array(outboxKeys.map(JSON.string)),
            "prev_hash": .string(prevHash), "hash": .string(hash), "outcome": .string(outcome),
            "reason": reason.map(JSON.string) ?? .null,
            "server_received_at": serverReceivedAt.map(JSON.int) ?? .null,
        ])
    }

    /// Checks a device's rows, in audit_id order, against each other and
    /// their hashes; returns the audit ids where the chain breaks.
    package static func chainBreaks(_ rows: [AuditRow], anchor: String = genesis) throws(FieldSyncError) -> [Int64] {
        var previous = anchor
        var breaks: [Int64] = []
        for row in rows {
            let hash = try row.computedHash()
            if row.prevHash != previous || hash != row.hash { breaks.append(row.auditId) }
            previous = row.hash
        }
        return breaks
    }
}

/// The audit table of a device store.
struct AuditLog {
    static let ddl = """
        CREATE TABLE fs_audit(
            audit_id INTEGER PRIMARY KEY,
            actor TEXT NOT NULL, action TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
            input TEXT NOT NULL, device_time INTEGER NOT NULL, hlc INTEGER NOT NULL,
            outbox_keys TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'pending', reason TEXT, server_received_at INTEGER)
        """

    static func insert(_ row: AuditRow, inputText: [UInt8], into db: Connection) throws(FieldSyncError) {
        try db.run(insertSQL, [.int(row.auditId), .text(row.actor), .text(row.action), .text(row.type), .text(row.id),
                               .bytes(inputText), .int(row.deviceTime), .int(row.hlc),
                               .bytes(keysText(row.outboxKeys)), .text(row.prevHash), .text(row.hash)])
    }

    static func keysText(_ keys: [String]) -> [UInt8] {
        var out = ByteWriter(capacity: 64)
        AuditRow.writeKeys(keys, to: &out)
        return out.array
    }

    static let insertSQL = PreparedSQL("""
        INSERT INTO fs_audit(audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, prev_hash, hash)
        VALUES(?,?,?,?,?,?,?,?,?,?,?)
        """)

    /// Rows matching `filter` (the header's fs_audit_query).
    static func query(_ filter: JSON, deviceId: String, db: Connection) throws(FieldSyncError) -> [AuditRow] {
        guard let f = filter.isNull ? [:] : filter.object else { throw .arg("audit filter must be an object, got \(filter.kind)") }
        try checkKeys(f, allowed: ["type", "id", "actor", "action", "since", "until", "limit", "desc"], in: "audit filter", code: FieldSyncError.arg)
        let (clauses, values) = try auditFilter(f, columns: ["type": "type", "id": "id", "actor": "actor", "action": "action"],
                                                deviceTime: "device_time")
        let (order, limit) = try orderAndLimit(f, column: "audit_id", context: "audit filter")
        let clause = (clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")) + order
        return try db.queryAudit(clause, values + [limit], device: deviceId)
    }
}

/// " ORDER BY <column> [DESC] LIMIT ?" from a filter's "desc" and "limit",
/// with the limit to bind (the largest, when the filter has none): the SQL
/// text is the same whatever the limit.
func orderAndLimit(_ f: JSONObject, column: String, tieBreak: String? = nil, context: String) throws(FieldSyncError) -> (String, SQLValue) {
    var sql = " ORDER BY \(column)"
    if let d = f["desc"], !d.isNull {
        guard let desc = d.bool else { throw .arg("\(context): \"desc\" must be true or false") }
        if desc { sql += " DESC" }
    }
    if let tieBreak { sql += ", \(tieBreak)" }
    // No limit is the largest: `LIMIT -1` is SQLite's alone.
    var limit = Int64.max
    if let l = f["limit"], !l.isNull {
        guard let n = l.int, n >= 0 else { throw .arg("\(context): \"limit\" must be an integer >= 0") }
        limit = n
    }
    return (sql + " LIMIT ?", .int(limit))
}

/// WHERE clauses of an audit filter: equality on the named string members,
/// and `since` (inclusive) / `until` (exclusive) on device time. Shared by the
/// device's and the hub's audit queries.
func auditFilter(_ f: JSONObject, columns: [String: String], deviceTime: String) throws(FieldSyncError) -> ([String], [SQLValue]) {
    var clauses: [String] = []
    var values: [SQLValue] = []
    for key in columns.keys.sorted() {
        guard let v = f[key], !v.isNull, let column = columns[key] else { continue }
        guard let s = v.string else { throw .arg("audit filter: \"\(key)\" must be a string") }
        clauses.append("\(column) = ?")
        values.append(.text(s))
    }
    for (key, op) in [("since", ">="), ("until", "<")] {
        guard let v = f[key], !v.isNull else { continue }
        guard let ms = v.int else { throw .arg("audit filter: \"\(key)\" must be milliseconds (an integer)") }
        clauses.append("\(deviceTime) \(op) ?")
        values.append(.int(ms))
    }
    return (clauses, values)
}
