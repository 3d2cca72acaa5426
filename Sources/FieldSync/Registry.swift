// The hub's registry of devices (docs/SECURITY.md): which device ids may sync,
// with which public key, from which store instance, over which records; the
// keys each device has had (so old signatures stay verifiable), the signed
// heads of their audit chains, and the last refusals. Its SQL lives here, as
// the rest of the hub's in HubStorage.swift.

/// A device as the hub enrolled it.
struct Enrollment {
    var device: String
    var publicKey: String
    /// The store instance the device syncs from; nil until its first
    /// request when the enrollment did not name one.
    var instance: String?
    /// Per type, the equality filter of the records the device may pull,
    /// fetch and write; nil: every record of every type.
    var scope: [String: JSONObject]?
    var write: Bool
    var revoked: Bool

    /// Whether the device may see this record (a tombstone of a type it may
    /// see, so it learns of deletes).
    func sees(_ type: String, _ state: RecordState) -> Bool {
        guard let scope else { return true }
        guard let filter = scope[type] else { return false }
        if state.deleted { return true }
        return filter.allSatisfy { state.fields[$0.key] ?? .null == $0.value }
    }
}

extension HubStorage {
    static let registryDDL = [
        """
        CREATE TABLE IF NOT EXISTS fs_devices(device_id TEXT PRIMARY KEY NOT NULL, public_key TEXT NOT NULL, instance TEXT,
            scope TEXT, can_write INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, enrolled_at INTEGER NOT NULL,
            revoked_at INTEGER, last_seen_at INTEGER) WITHOUT ROWID
        """,
        // Every key a device was enrolled with, and until when it was valid:
        // audit heads signed with a rotated key still verify.
        """
        CREATE TABLE IF NOT EXISTS fs_device_keys(device_id TEXT NOT NULL, public_key TEXT NOT NULL, since INTEGER NOT NULL,
            until INTEGER, PRIMARY KEY(device_id, public_key)) WITHOUT ROWID
        """,
        // A device's signature over the head of its audit chain, one per
        // request that carried rows: with the chain it covers every row before.
        """
        CREATE TABLE IF NOT EXISTS fs_audit_heads(device TEXT NOT NULL, audit_id INTEGER NOT NULL, hash TEXT NOT NULL,
            public_key TEXT NOT NULL, signature TEXT NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY(device, audit_id)) WITHOUT ROWID
        """,
        "CREATE TABLE IF NOT EXISTS fs_auth_log(at INTEGER NOT NULL, device_id TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL)",
    ]
    /// Refusals kept for the operator; older ones are counted, not listed.
    static let authLogRows: Int64 = 1000

    /// The hub's own key, made with the file (and by the first open of a hub
    /// made before keys existed).
    func signingKey() throws(FieldSyncError) -> SigningKey {
        if let stored = try meta("signing_key")?.string {
            return try SigningKey(stored: stored)
        }
        let key = try SigningKey.generate()
        try setMeta("signing_key", .string(Hex.encode(key.seed)))
        return key
    }

    func enrollment(_ device: String) throws(FieldSyncError) -> Enrollment? {
        var found: Enrollment?
        try db.select("SELECT public_key, instance, scope, can_write, revoked FROM fs_devices WHERE device_id = ?", [.text(device)]) {
            (r) throws(FieldSyncError) -> Bool in
            var scope: [String: JSONObject]?
            if let text = r.optionalText(2) {
                guard let o = try JSON.parse(text, what: "fs_devices.scope of \(device)").object else { throw .corrupt("fs_devices.scope of \(device) is not an object") }
                scope = o.reduce(into: [:]) { $0[$1.key] = $1.value.object ?? [:] }
            }
            found = Enrollment(device: device, publicKey: r.text(0), instance: r.optionalText(1), scope: scope,
                               write: r.int(3) != 0, revoked: r.int(4) != 0)
            return false
        }
        return found
    }

    /// Enrolls or re-enrolls (a new key is a rotation: the old one is kept as
    /// retired). Returns whether the key changed.
    func enroll(_ e: Enrollment, at now: Int64) throws(FieldSyncError) -> Bool {
        let old = try enrollment(e.device)
        let scopeText: SQLValue = e.scope.map { .text(JSON.object(JSONObject($0, JSON.object)).text) } ?? .null
        let instance: SQLValue = (e.instance ?? (old?.publicKey == e.publicKey ? old?.instance : nil)).map(SQLValue.text) ?? .null
        try db.run("""
            INSERT INTO fs_devices(device_id, public_key, instance, scope, can_write, revoked, enrolled_at) VALUES(?,?,?,?,?,0,?)
            ON CONFLICT(device_id) DO UPDATE SET public_key = excluded.public_key, instance = excluded.instance, scope = excluded.scope,
                can_write = excluded.can_write, revoked = 0, revoked_at = NULL, enrolled_at = excluded.enrolled_at
            """, [.text(e.device), .text(e.publicKey), instance, scopeText, .int(e.write ? 1 : 0), .int(now)])
        let rotated = old != nil && old?.publicKey != e.publicKey
        try db.run("UPDATE fs_device_keys SET until = ? WHERE device_id = ? AND public_key <> ? AND until IS NULL",
                   [.int(now), .text(e.device), .text(e.publicKey)])
        try db.run("INSERT INTO fs_device_keys(device_id, public_key, since) VALUES(?,?,?) ON CONFLICT(device_id, public_key) DO UPDATE SET until = NULL",
                   [.text(e.device), .text(e.publicKey), .int(now)])
        return rotated
    }

    func revoke(_ device: String, at now: Int64) throws(FieldSyncError) {
        guard try enrollment(device) != nil else { throw .notFound("no device '\(device)' is enrolled") }
        try db.run("UPDATE fs_devices SET revoked = 1, revoked_at = ? WHERE device_id = ?", [.int(now), .text(device)])
        try db.run("UPDATE fs_device_keys SET until = ? WHERE device_id = ? AND until IS NULL", [.int(now), .text(device)])
    }

    /// Whether `publicKey` was once this device's key (a request signed with
    /// it after rotation is told so, not just "bad signature").
    func wasKey(_ publicKey: String, of device: String) throws(FieldSyncError) -> Bool {
        try db.scalar("SELECT count(*) FROM fs_device_keys WHERE device_id = ? AND public_key = ? AND until IS NOT NULL",
                      [.text(device), .text(publicKey)]) ?? 0 > 0
    }

    func seen(_ device: String, instance: String, at now: Int64) throws(FieldSyncError) {
        try db.run("UPDATE fs_devices SET last_seen_at = ?, instance = coalesce(instance, ?) WHERE device_id = ?",
                   [.int(now), .text(instance), .text(device)])
    }

    /// Keeps a verified audit head when the hub holds the row it names with
    /// that hash (a row refused as reused is not vouched for here).
    func storeHead(_ head: Wire.Credentials.Head, device: String, publicKey: String, at now: Int64) throws(FieldSyncError) {
        try db.run("""
            INSERT INTO fs_audit_heads(device, audit_id, hash, public_key, signature, received_at)
            SELECT device, audit_id, hash, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT) FROM fs_hub_audit
            WHERE device = ? AND audit_id = ? AND hash = ? ON CONFLICT DO NOTHING
            """, [.text(publicKey), .text(Hex.encode(head.signature)), .int(now), .text(device), .int(head.auditId), .text(head.hash)])
    }

    /// The highest seq decided and audit row held for a device (Restore.swift).
    func holds(device: String) throws(FieldSyncError) -> Wire.Response.Holds {
        var holds = Wire.Response.Holds(seq: try db.scalar("SELECT max(seq) FROM fs_hub_applied WHERE device = ?", [.text(device)]) ?? 0,
                                        auditId: 0, auditHash: nil)
        try db.select("SELECT audit_id, hash FROM fs_hub_audit WHERE device = ? ORDER BY audit_id DESC LIMIT 1", [.text(device)]) { r in
            holds.auditId = r.int(0)
            holds.auditHash = r.text(1)
            return false
        }
        return holds
    }

    /// Counts a refusal and keeps it in the log, in its own transaction: the
    /// refused request changes nothing else.
    func logRefusal(device: String, code: String, message: String, at now: Int64) throws(FieldSyncError) {
        try db.transaction { () throws(FieldSyncError) in
            try increment("auth_refused_\(code)")
            try logRefusalRow(device: device, code: code, message: message, at: now)
        }
    }

    /// A row of the refusal log, inside the caller's transaction.
    func logRefusalRow(device: String, code: String, message: String, at now: Int64) throws(FieldSyncError) {
        try db.run("INSERT INTO fs_auth_log(at, device_id, code, message) VALUES(?,?,?,?)",
                   [.int(now), .text(device), .text(code), .text(message)])
        try db.run("DELETE FROM fs_auth_log WHERE rowid <= (SELECT max(rowid) FROM fs_auth_log) - ?", [.int(HubStorage.authLogRows)])
    }

    /// The registry for the operator: devices with their keys, and the latest refusals.
    func devices() throws(FieldSyncError) -> JSON {
        var keys: [String: [JSON]] = [:]
        try db.select("SELECT device_id, public_key, since, until FROM fs_device_keys ORDER BY device_id, since") { r in
            var k: JSONObject = ["public_key": .string(r.text(1)), "since": .int(r.int(2))]
            k["until"] = r.optionalInt(3).map(JSON.int) ?? .null
            keys[r.text(0), default: []].append(.object(k))
            return true
        }
        var devices: [JSON] = []
        try db.select("""
            SELECT device_id, public_key, instance, scope, can_write, revoked, enrolled_at, revoked_at, last_seen_at
            FROM fs_devices ORDER BY device_id
            """) { (r) throws(FieldSyncError) -> Bool in
            let device = r.text(0)
            var d: JSONObject = ["device_id": .string(device), "public_key": .string(r.text(1)),
                                 "write": .bool(r.int(4) != 0), "state": .string(r.int(5) != 0 ? "revoked" : "active"),
                                 "enrolled_at": .int(r.int(6)), "keys": .array(keys[device] ?? [])]
            d["instance"] = r.optionalText(2).map(JSON.string) ?? .null
            d["scope"] = try r.optionalText(3).map { (t) throws(FieldSyncError) -> JSON in try JSON.parse(t, what: "fs_devices.scope") } ?? .null
            d["revoked_at"] = r.optionalInt(7).map(JSON.int) ?? .null
            d["last_seen_at"] = r.optionalInt(8).map(JSON.int) ?? .null
            devices.append(.object(d))
            return true
        }
        var refusals: [JSON] = []
        try db.select("SELECT at, device_id, code, message FROM fs_auth_log ORDER BY rowid DESC LIMIT 100") { r in
            refusals.append(.object(["at": .int(r.int(0)), "device_id": .string(r.text(1)), "code": .string(r.text(2)),
                                     "message": .string(r.text(3))]))
            return true
        }
        return .object(["devices": .array(devices), "refusals": .array(refusals)])
    }
}
