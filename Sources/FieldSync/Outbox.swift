// The outbox: one entry per action, kept until the hub acknowledges it
// (docs/PROTOCOL.md). Keys are "<device_id>-<seq>"; seq equals the action's audit_id.

package enum OutboxState: String, Sendable {
    case pending, inflight, rejected, stuck
}

/// The row an action appends to fs_outbox (its state, attempts and reason
/// start at the table's defaults).
package struct OutboxEntry: Equatable, Sendable {
    package var seq: Int64
    package var type: String
    package var id: String
    package var hlc: Int64
    package var schemaVersion: Int64
    package var change: Change
    package var base: JSONObject
    /// For `custom` fields: the server value the device's write was based on.
    package var baseValues: JSONObject = [:]
    /// The hub cursor the device had pulled up to when it acted: the server
    /// state this change was made against (observed-remove sets rely on it).
    package var cursor: Int64 = 0
}

struct Outbox {
    static let ddl = [
        """
        CREATE TABLE fs_outbox(
            seq INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, hlc INTEGER NOT NULL,
            schema_version INTEGER NOT NULL, ops TEXT NOT NULL, base TEXT, base_values TEXT, cursor INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL DEFAULT 0, batch TEXT, reason TEXT)
        """,
        // Rebase and per-record ordering read one record's entries in seq order.
        "CREATE INDEX fs_outbox_record ON fs_outbox(type, id, seq)",
        inflightIndex,
    ]
    /// So that every prepare and receive finds the batch in flight without
    /// scanning the outbox (that made draining a backlog quadratic). Partial:
    /// entries queued by apply are not in it, and apply pays only SQLite's
    /// check of the condition (~950 instructions of its ~150k; an index for
    /// the entries backing off, which only connectivity up reads, was not
    /// worth as much). Stores made before it get it when opened.
    static let inflightIndex = "CREATE INDEX IF NOT EXISTS fs_outbox_inflight ON fs_outbox(batch) WHERE state = 'inflight'"

    static func key(device: String, seq: Int64) -> String { "\(device)-\(seq)" }

    /// The seq of a key of this device, or nil when it is not one.
    static func seq(ofKey key: String, device: String) -> Int64? {
        let prefix = device + "-"
        guard key.hasPrefix(prefix) else { return nil }
        guard let seq = Int64(key.dropFirst(prefix.count)), seq > 0 else { return nil }
        return seq
    }

    static func insert(_ e: OutboxEntry, into db: Connection) throws(FieldSyncError) {
        try db.run(insertSQL,
                   [.int(e.seq), .text(e.type), .text(e.id), .int(e.hlc), .int(e.schemaVersion),
                    .bytes(e.change.json.bytes), e.base.isEmpty ? .null : .bytes(JSON.object(e.base).bytes),
                    e.baseValues.isEmpty ? .null : .bytes(JSON.object(e.baseValues).bytes), .int(e.cursor)])
    }

    static let insertSQL = PreparedSQL("INSERT INTO fs_outbox(seq, type, id, hlc, schema_version, ops, base, base_values, cursor) VALUES(?,?,?,?,?,?,?,?,?)")

    static func count(_ db: Connection) throws(FieldSyncError) -> Int64 {
        try db.scalar("SELECT count(*) FROM fs_outbox") ?? 0
    }

    /// Changes of one record still to be applied by the hub (everything but
    /// rejected entries), in the order they were made.
    static func replayable(type: String, id: String, db: Connection) throws(FieldSyncError) -> [(change: Change, hlc: Int64, schemaVersion: Int64)] {
        var changes: [(Change, Int64, Int64)] = []
        try db.query("SELECT ops, hlc, schema_version FROM fs_outbox WHERE type = ? AND id = ? AND state != 'rejected' ORDER BY seq",
                     [.text(type), .text(id)]) { (r) throws(FieldSyncError) -> Bool in
            changes.append((Change(json: try r.storedObject(0, "fs_outbox.ops of \(type)/\(id)")), r.int(1), r.int(2)))
            return true
        }
        return changes
    }

    /// For each of `fields`, the newest unrejected entry of the record that
    /// sets it: its seq and the value it wrote.
    static func lastWriters(of fields: Set<String>, type: String, id: String,
                            db: Connection) throws(FieldSyncError) -> [String: (seq: Int64, value: JSON)] {
        var found: [String: (Int64, JSON)] = [:]
        try db.query("SELECT seq, ops FROM fs_outbox WHERE type = ? AND id = ? AND state != 'rejected' ORDER BY seq DESC",
                     [.text(type), .text(id)]) { (r) throws(FieldSyncError) -> Bool in
            let set = try r.storedObject(1, "fs_outbox.ops of entry \(r.int(0))")["set"]?.object ?? [:]
            for f in fields where found[f] == nil { if let value = set[f] { found[f] = (r.int(0), value) } }
            return found.count < fields.count
        }
        return found
    }

    /// Entries as the ABI lists them (header fs_outbox_list), joined with
    /// their audit rows for action, actor and device time.
    static func list(_ filter: JSON, device: String, db: Connection) throws(FieldSyncError) -> JSON {
        guard let f = filter.isNull ? [:] : filter.object else { throw .arg("outbox filter must be an object, got \(filter.kind)") }
        try checkKeys(f, allowed: ["state", "type", "id", "limit"], in: "outbox filter", code: FieldSyncError.arg)
        var clauses: [String] = []
        var values: [SQLValue] = []
        if let s = f["state"], !s.isNull {
            guard let name = s.string, OutboxState(rawValue: name) != nil else {
                throw .arg("outbox filter: \"state\" must be one of pending, inflight, rejected, stuck")
            }
            clauses.append("o.state = ?")
            values.append(.text(name))
        }
        for key in ["type", "id"] {
            guard let v = f[key], !v.isNull else { continue }
            guard let s = v.string else { throw .arg("outbox filter: \"\(key)\" must be a string") }
            clauses.append("o.\(key) = ?")
            values.append(.text(s))
        }
        var sql = """
            SELECT o.seq, o.type, o.id, o.hlc, o.schema_version, o.ops, o.base, o.state, o.attempts,
                   o.next_attempt_at, o.reason, a.action, a.actor, a.device_time
            FROM fs_outbox o LEFT JOIN fs_audit a ON a.audit_id = o.seq
            """
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        let (order, limit) = try orderAndLimit(f, column: "o.seq", context: "outbox filter")
        var entries: [JSON] = []
        try db.queryOnce(sql + order, values + [limit]) { (r) throws(FieldSyncError) -> Bool in
            let seq = r.int(0)
            let place = "fs_outbox entry \(seq)"
            let base = r.isNull(6) ? JSON.object([:]) : try r.storedObject(6, "\(place): base")
            entries.append(.object([
                "key": .string(key(device: device, seq: seq)), "seq": .int(seq),
                "type": .string(r.text(1)), "id": .string(r.text(2)), "hlc": .int(r.int(3)),
                "schema_version": .int(r.int(4)),
                "ops": try r.storedObject(5, "\(place): ops"),
                "base": base,
                "state": .string(r.text(7)), "attempts": .int(r.int(8)), "next_attempt_at": .int(r.int(9)),
                "reason": r.optionalText(10).map(JSON.string) ?? .null,
                "action": r.optionalText(11).map(JSON.string) ?? .null,
                "actor": r.optionalText(12).map(JSON.string) ?? .null,
                "device_time": r.optionalInt(13).map(JSON.int) ?? .null,
            ]))
            return true
        }
        return .array(entries)
    }
}
