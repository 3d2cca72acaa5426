// The device store (docs/ARCHITECTURE.md): one SQLite file holding the local view, the
// outbox, the audit trail, the server-confirmed shadow state and metadata.
import CSQLite
import Glibc

package final class Store {
    let db: Connection
    package let schema: Schema
    package let deviceId: String
    package let durability: String
    let views: [String: LocalView]

    /// Wall clock in ms since the epoch; replaced by tests and hosts.
    package var wallClock: () -> Int64 = systemWallClock
    /// The wall time as the engine uses it, everywhere: a host clock may
    /// return anything (docs/ABI.md), so it is clamped where it enters, and
    /// every time computed from it (retries, waits, TTLs, hygiene windows,
    /// device_time) is safe from overflow.
    func now() -> Int64 { HybridClock.clampWall(wallClock()) }
    // Chain state of the last committed action; advanced only after COMMIT,
    // and reread when another handle has written the file (Coherence.swift).
    var clock: HybridClock
    /// Stamps pulled from the hub further ahead than this are not adopted (HybridClock).
    var maxClockSkewMs = HybridClock.defaultMaxSkewMs
    var lastSeq: Int64
    var lastHash: String
    var sync: SyncState
    /// The file's data version after this handle's last write (Coherence.swift).
    var seenDataVersion: UInt32?
    /// Confirmed (shadow) states as last committed, for `receive` (StateCache.swift).
    var shadows = StateCache()

    var hygieneSettings = HygieneSettings()
    /// When this handle last evicted acknowledged entries past their window.
    var ackedEvictedAt: Int64 = 0
    /// Keys, instance id and whether to authenticate (DeviceIdentity.swift).
    var identity: DeviceIdentity

    static let optionKeys = SyncState.optionKeys.union(HygieneSettings.optionKeys).union(["durability", "device_id", "busy_timeout_ms", "max_clock_skew_ms", "auth"])

    static let internalDDL = [
        "CREATE TABLE fs_meta(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID",
        // Server-confirmed state of each record, and the server's per-field
        // versions that `server` fields are compared against.
        """
        CREATE TABLE fs_shadow(type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            state TEXT NOT NULL, cached_until INTEGER, PRIMARY KEY(type, id)) WITHOUT ROWID
        """,
        // Records hygiene evicted, so a read can say they may be fetched.
        "CREATE TABLE fs_evicted(type TEXT NOT NULL, id TEXT NOT NULL, evicted_at INTEGER NOT NULL, PRIMARY KEY(type, id)) WITHOUT ROWID",
        AuditLog.ddl,
        Store.ackedDDL,
    ] + Outbox.ddl

    package convenience init(path: String, schemaJSON: String, optionsJSON: String?) throws(FieldSyncError) {
        let options = try optionsJSON.map { (text) throws(FieldSyncError) -> JSON in try JSON.parse(text, what: "options") } ?? .null
        try self.init(path: path, schema: Schema(json: schemaJSON), options: options)
    }

    package init(path: String, schema: Schema, options: JSON) throws(FieldSyncError) {
        guard let opts = options.isNull ? [:] : options.object else { throw .arg("options must be a JSON object, got \(options.kind)") }
        try checkKeys(opts, allowed: Store.optionKeys, in: "options", code: FieldSyncError.arg)
        var sync = SyncState()
        try sync.configure(opts)
        // Checked as the hub checks it, before the file is touched: a scope
        // the hub refuses would otherwise stop every sync after a good open.
        _ = try schema.checkedScope(opts["scope"], clientVersion: schema.version, in: "options")
        let maxClockSkewMs = try HybridClock.skewOption(opts)
        let authenticates = try authOption(opts, in: "options")
        var hygieneSettings = HygieneSettings()
        try hygieneSettings.configure(opts)
        var requestedDevice: String?
        if let d = opts["device_id"] {
            guard let s = d.string, isDeviceId(s) else {
                throw .arg("options: \"device_id\" must be 1 to 64 characters of [A-Za-z0-9_.:-]")
            }
            requestedDevice = s
        }
        let db = try Connection.openDatabase(path: path, options: opts)
        let durability = opts["durability"]?.string ?? "full"

        let views = schema.types.mapValues(LocalView.init(spec:))
        let (deviceId, olderSchema, identity) = try db.transaction { () throws(FieldSyncError) -> (String, Schema?, DeviceIdentity) in
            let hasMeta = try db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fs_meta'") ?? 0
            if hasMeta == 0 {
                let tables = try db.scalar("SELECT count(*) FROM sqlite_master") ?? 0
                if tables > 0 { throw .corrupt("\(path) holds tables but is not a fieldsync store (no fs_meta)") }
                let device = try Store.create(db: db, schema: schema, views: views, deviceId: requestedDevice ?? newDeviceId())
                return (device, nil, try DeviceIdentity.load(db: db, authenticates: authenticates))
            }
            let (device, older) = try Store.check(db: db, schema: schema, requestedDevice: requestedDevice)
            try db.exec(Outbox.inflightIndex)
            try db.exec(Store.ackedDDL)
            return (device, older, try DeviceIdentity.load(db: db, authenticates: authenticates))
        }

        self.db = db
        self.schema = schema
        self.deviceId = deviceId
        self.durability = durability
        self.views = views
        // The chain head, the clock and the sync progress are read from the
        // file by the first write (catchUp), once the schema is current.
        self.lastSeq = 0
        self.lastHash = AuditRow.genesis
        self.clock = HybridClock()
        self.sync = sync
        self.maxClockSkewMs = maxClockSkewMs
        self.hygieneSettings = hygieneSettings
        self.identity = identity
        if let olderSchema { try migrate(from: olderSchema) }
        try loadSyncProgress()
        self.hygieneSettings.lastPassSeq = lastSeq
        if hygieneSettings.onOpen { _ = try hygiene() }
    }

    private static func create(db: Connection, schema: Schema, views: [String: LocalView], deviceId: String) throws(FieldSyncError) -> String {
        for sql in internalDDL { try db.exec(sql) }
        for name in views.keys.sorted() { try db.exec(views[name]?.ddl ?? "") }
        for (key, value) in [("format", JSON.int(1)), ("device_id", .string(deviceId)), ("schema", .string(schema.canonical)),
                             ("schema_version", .int(schema.version))] {
            try db.run("INSERT INTO fs_meta(key, value) VALUES(?, ?)", [.text(key), value.sqlLiteral])
        }
        return deviceId
    }

    /// Checks an existing store against `schema`; returns its device id and,
    /// when `schema` is newer, the schema the store holds (to migrate from).
    private static func check(db: Connection, schema: Schema, requestedDevice: String?) throws(FieldSyncError) -> (String, Schema?) {
        guard let deviceId = try meta("device_id", db: db)?.string,
              let stored = try meta("schema", db: db)?.string,
              let version = try meta("schema_version", db: db)?.int else {
            throw .corrupt("fs_meta is incomplete: not a fieldsync store, or a damaged one")
        }
        if let requestedDevice, requestedDevice != deviceId {
            throw .arg("options: device_id '\(requestedDevice)' differs from this store's device id '\(deviceId)'")
        }
        if schema.version < version {
            throw .schema("the store holds schema version \(version); opening it with older version \(schema.version) is refused (no downgrade)")
        }
        if schema.version > version {
            return (deviceId, try Schema.stored(stored))
        }
        if schema.canonical != stored {
            throw .schema("the schema differs from the one stored with the same version \(version) (\(Schema.describeChanges(from: stored, to: schema))); give it a new version")
        }
        return (deviceId, nil)
    }

    static func meta(_ key: String, db: Connection) throws(FieldSyncError) -> JSON? {
        var value: JSON?
        try db.query("SELECT value FROM fs_meta WHERE key = ?", [.text(key)]) { row in
            if row.isNull(0) { value = .null } else if sqlite3_column_type(row.handle, 0) == SQLITE_INTEGER {
                value = .int(row.int(0))
            } else {
                value = .string(row.text(0))
            }
            return false
        }
        return value
    }

    package func close() { db.close() }

    func view(_ type: String) throws(FieldSyncError) -> LocalView {
        guard let view = views[type], compareUTF8(view.spec.name, type) == 0 else {
            _ = try schema.type(type)
            throw .internal("no table for type '\(type)'")
        }
        return view
    }

    // MARK: - Apply

    /// Applies one action: local view, outbox entry and audit row in one transaction.
    package func apply(_ json: JSON) throws(FieldSyncError) -> JSON {
        let action = try Action(json: json, schema: schema)
        let view = try view(action.type)
        let spec = view.spec
        let wall = now()

        let (record, hash, clock, seq) = try write { () throws(FieldSyncError) -> (JSON, String, HybridClock, Int64) in
            // Taken once caught up with the file: another handle may have written.
            var clock = self.clock
            let stamp = try clock.tick(wallMs: wall)
            guard lastSeq < Int64.max else { throw .corrupt("the store's last sequence number is \(lastSeq): no next one") }
            let seq = lastSeq + 1
            let key = Outbox.key(device: deviceId, seq: seq)
            var existing = try view.load(action.id, db: db)
            let isNew = existing == nil
            if action.change.delete && isNew {
                throw .notFound("no record \(action.type)/\(action.id) to delete")
            }
            // A record absent from the view is created by any write. The
            // fields are taken, not shared, so the merge changes them in place.
            var state = RecordState()
            state.fields = existing.take() ?? [:]
            state.deleted = isNew
            // The view row keeps fields only: no stamps to record.
            _ = try Merge.merge(action.change, stamp: Stamp(hlc: stamp, device: deviceId), into: &state, spec: spec, stamping: false)
            let alive = !state.deleted
            let fields = state.fields
            if alive {
                if spec.required.contains(where: { (fields[$0] ?? .null).isNull }) {
                    let missing = spec.required.filter { (fields[$0] ?? .null).isNull }.sorted()
                    if isNew, try db.scalar("SELECT 1 FROM fs_evicted WHERE type = ? AND id = ?", [.text(action.type), .text(action.id)]) != nil {
                        throw .notFound("record \(action.type)/\(action.id) was evicted from this device by storage hygiene; fetch it from the hub (fs_fetch_request) before changing it")
                    }
                    throw .schema("\(isNew ? "creating" : "updating") \(action.type)/\(action.id) needs the required field(s) \(missing.joined(separator: ", ")) in \"set\"")
                }
                try view.save(action.id, fields, db: db)
            } else {
                try view.delete(action.id, db: db)
            }
            // `server` and `custom` writes carry the server version they were
            // based on (compare-and-set; "was this concurrent?"), and custom
            // writes the server value too, for the resolver's "base".
            var base: JSONObject = [:], baseValues: JSONObject = [:]
            let isBased = { (f: String) in spec.field(f).map { $0.merge == .server || $0.merge == .custom } ?? false }
            if action.change.set.keys.contains(where: isBased) {
                let based = action.change.set.keys.filter(isBased)
                let shadow = try shadow(type: action.type, id: action.id)
                let pending = try Outbox.lastWriters(of: Set(based), type: action.type, id: action.id, db: db)
                for f in based {
                    // A write following this device's own unacknowledged write
                    // of the field is based on that write, not on stale server state.
                    let custom = spec.field(f)?.merge == .custom
                    if let previous = pending[f] {
                        base[f] = .object(["after": .int(previous.seq)])
                        if custom { baseValues[f] = previous.value }
                    } else {
                        base[f] = shadow?.versions[f].map(JSON.int) ?? .null
                        if custom { baseValues[f] = shadow?.fields[f] ?? .null }
                    }
                }
            }
            try Outbox.insert(OutboxEntry(seq: seq, type: action.type, id: action.id, hlc: stamp,
                                          schemaVersion: schema.version, change: action.change, base: base,
                                          baseValues: baseValues, cursor: sync.cursor), into: db)
            var row = AuditRow(auditId: seq, deviceId: deviceId, actor: action.actor, action: action.name,
                               type: action.type, id: action.id, input: action.input, deviceTime: wall, hlc: stamp,
                               outboxKeys: [key], prevHash: lastHash, hash: "")
            let inputText = action.input.bytes
            row.hash = try row.computedHash(input: inputText)
            try AuditLog.insert(row, inputText: inputText, into: db)
            let record = spec.recordJSON(id: action.id, fields: alive ? fields : [:],
                                         meta: alive ? nil : ["deleted": .bool(true)])
            return (record, row.hash, clock, seq)
        }
        self.clock = clock
        lastSeq = seq
        lastHash = hash
        return .object(["audit_id": .int(seq), "hlc": .int(clock.last), "outbox_key": .string(Outbox.key(device: deviceId, seq: seq)),
                        "record": record, "seq": .int(seq)])
    }


    // MARK: - Reads

    package func get(type: String, id: String) throws(FieldSyncError) -> JSON {
        try checkLength(type, what: "type")
        try checkLength(id, what: "id")
        if id.isEmpty { throw .arg("id is empty") }
        let view = try view(type)
        guard let fields = try view.load(id, db: db) else {
            if try db.scalar("SELECT 1 FROM fs_evicted WHERE type = ? AND id = ?", [.text(type), .text(id)]) != nil {
                throw .notFound("record \(type)/\(id) was evicted from this device by storage hygiene; fetch it from the hub (fs_fetch_request)")
            }
            throw .notFound("no record \(type)/\(id) on this device")
        }
        // -1: stale since the hub was restored, until pulled again (HubRestore.swift).
        let version = try db.scalar("SELECT version FROM fs_shadow WHERE type = ? AND id = ?", [.text(type), .text(id)]).flatMap { $0 < 0 ? nil : $0 }
        let pending = try db.scalar("SELECT count(*) FROM fs_outbox WHERE type = ? AND id = ?", [.text(type), .text(id)]) ?? 0
        return view.spec.recordJSON(id: id, fields: fields,
                                    meta: ["server_version": version.map(JSON.int) ?? .null, "pending": .int(pending)])
    }

    package func query(_ json: JSON) throws(FieldSyncError) -> JSON {
        guard let q = json.object else { throw .arg("a query must be a JSON object, got \(json.kind)") }
        try checkKeys(q, allowed: ["type", "where", "order_by", "desc", "limit"], in: "query", code: FieldSyncError.arg)
        let type = try requiredText(q, "type", in: "query")
        return try view(type).query(q, db: db)
    }

    package func stats() throws(FieldSyncError) -> JSON {
        try catchUp()
        var stats: JSONObject = [
            "device_id": .string(deviceId), "schema_version": .int(schema.version), "durability": .string(durability),
            "last_seq": .int(lastSeq), "hlc": .int(clock.last),
        ]
        var records: Int64 = 0
        for (name, view) in views {
            let n = try view.count(db: db)
            stats["records_\(name)"] = .int(n)
            records += n
        }
        stats["records"] = .int(records)
        var total: Int64 = 0
        for state in ["pending", "inflight", "rejected", "stuck"] {
            let n = try db.scalar("SELECT count(*) FROM fs_outbox WHERE state = ?", [.text(state)]) ?? 0
            stats["outbox_\(state)"] = .int(n)
            total += n
        }
        stats["outbox_total"] = .int(total)
        stats["audit_rows"] = .int(try db.scalar("SELECT count(*) FROM fs_audit") ?? 0)
        let pages = try db.scalar("PRAGMA page_count") ?? 0
        let pageSize = try db.scalar("PRAGMA page_size") ?? 0
        stats["file_bytes"] = .int(pages &* pageSize)
        let anchor = try auditAnchor()
        stats["audit_anchor_seq"] = .int(anchor.seq)
        stats["audit_anchor_hash"] = .string(anchor.hash)
        stats["records_cached"] = .int(try db.scalar("SELECT count(*) FROM fs_shadow WHERE cached_until IS NOT NULL") ?? 0)
        stats["records_evicted"] = .int(try db.scalar("SELECT count(*) FROM fs_evicted") ?? 0)
        stats["public_key"] = .string(publicKey)
        stats["instance_id"] = .string(identity.instance)
        // "" when none is pinned, as "last_failure": stats stay a flat object of numbers and strings.
        stats["hub_key"] = .string(try pinnedHubKey().map { Hex.encode($0) } ?? "")
        stats["auth"] = .string(identity.authenticates ? "on" : "off")
        stats["signer"] = .string(identity.signer.external ? "host" : "store")
        stats["restored_recoveries"] = .int(try Store.meta("restored_recoveries", db: db)?.int ?? 0)
        stats["last_recovery"] = .string(try Store.meta("last_recovery", db: db)?.string ?? "")
        // A hub restored from an earlier copy (HubRestore.swift).
        stats["acked_retained"] = .int(try db.scalar("SELECT count(*) FROM fs_acked") ?? 0)
        stats["acked_retention_s"] = .int(hygieneSettings.ackedRetentionS)
        stats["hub_generation"] = .int(sync.hubGeneration ?? 0)
        stats["hub_recoveries"] = .int(try Store.meta("hub_recoveries", db: db)?.int ?? 0)
        stats["last_hub_recovery"] = .string(try Store.meta("last_hub_recovery", db: db)?.string ?? "")
        stats["entries_lost_in_hub_restore"] = .int(try Store.meta("entries_lost_in_hub_restore", db: db)?.int ?? 0)
        stats["hub_restore_incomplete"] = .string(try Store.meta("hub_restore_incomplete", db: db)?.string ?? "")
        stats = stats.merging(syncStats) { a, _ in a }
        for key in Store.writeCounters { stats[key] = .int(try Store.meta(key, db: db)?.int ?? 0) }
        return .object(stats)
    }

    // MARK: - Outbox and audit

    package func outboxCount() throws(FieldSyncError) -> Int64 { try Outbox.count(db) }

    package func outboxList(_ filter: JSON) throws(FieldSyncError) -> JSON {
        try Outbox.list(filter, device: deviceId, db: db)
    }

    /// Removes a rejected or stuck entry and recomputes its record without it.
    package func discard(key: String) throws(FieldSyncError) {
        guard let seq = Outbox.seq(ofKey: key, device: deviceId) else {
            throw .notFound("no outbox entry '\(key)' (keys of this device look like \(deviceId)-<seq>)")
        }
        // Checked with the write lock held: another handle may have settled it since.
        try write { () throws(FieldSyncError) in
            var found: (state: String, type: String, id: String)?
            try db.query("SELECT state, type, id FROM fs_outbox WHERE seq = ?", [.int(seq)]) { row in
                found = (row.text(0), row.text(1), row.text(2))
                return false
            }
            guard let found else { throw .notFound("no outbox entry '\(key)' (already acknowledged or discarded)") }
            guard found.state == OutboxState.rejected.rawValue || found.state == OutboxState.stuck.rawValue else {
                throw .conflict("outbox entry '\(key)' is \(found.state): only rejected or stuck entries can be discarded")
            }
            try db.run("DELETE FROM fs_outbox WHERE seq = ?", [.int(seq)])
            try db.run("UPDATE fs_audit SET outcome = 'discarded' WHERE audit_id = ?", [.int(seq)])
            try rebase(type: found.type, id: found.id)
        }
    }

    /// Moves the store to a newer schema in one transaction: server-confirmed
    /// states take the new field names, tables whose shape changed are
    /// rebuilt from confirmed state plus the outbox (whose entries keep their
    /// original schema version and are upcast when replayed and at the hub).
    func migrate(from old: Schema) throws(FieldSyncError) {
        shadows.forgetAll()
        try db.transaction { () throws(FieldSyncError) in
            var states: [(type: String, id: String, state: RecordState)] = []
            try db.query("SELECT type, id, state FROM fs_shadow") { (r) throws(FieldSyncError) -> Bool in
                let (type, id) = (r.text(0), r.text(1))
                states.append((type, id, RecordState(json: try r.storedObject(2, "fs_shadow.state of \(type)/\(id)"))))
                return true
            }
            for row in states {
                guard schema.types[row.type] != nil else {
                    try db.run("DELETE FROM fs_shadow WHERE type = ? AND id = ?", [.text(row.type), .text(row.id)])
                    continue
                }
                let state = schema.migrate(row.state, type: row.type, from: old)
                try db.run("UPDATE fs_shadow SET state = ? WHERE type = ? AND id = ?",
                           [.bytes(state.text(tags: false)), .text(row.type), .text(row.id)])
            }
            for type in try schema.migrateTables(db: db, from: old, views: views).sorted() {
                var ids: [String] = []
                try db.query("SELECT id FROM fs_shadow WHERE type = ? UNION SELECT id FROM fs_outbox WHERE type = ?",
                             [.text(type), .text(type)]) { r in
                    ids.append(r.text(0))
                    return true
                }
                for id in ids { try rebase(type: type, id: id) }
            }
            try setMeta("schema", .string(schema.canonical))
            try setMeta("schema_version", .int(schema.version))
            try setMeta("migrated_from", .int(old.version))
            try db.run("DELETE FROM fs_meta WHERE key = 'upgrade_required'")
        }
    }

    /// Recomputes a record's local view: server-confirmed state with the
    /// record's unrejected outbox changes replayed in order, by the same merge
    /// rules the hub applies.
    func rebase(type: String, id: String) throws(FieldSyncError) {
        let view = try view(type)
        var state = try shadow(type: type, id: id) ?? RecordState(absent: ())
        for entry in try Outbox.replayable(type: type, id: id, db: db) {
            // An entry queued under an older schema replays in today's field
            // names; a change the new schema cannot take waits for the hub's verdict.
            guard case .success(let change) = schema.upcast(entry.change, type: type, from: entry.schemaVersion) else { continue }
            _ = try Merge.merge(change, stamp: Stamp(hlc: entry.hlc, device: deviceId), into: &state, spec: view.spec, replaying: true)
        }
        if state.deleted { try view.delete(id, db: db) } else { try view.save(id, state.fields, db: db) }
    }

    /// The server-confirmed state of a record, if the device has one.
    func shadow(type: String, id: String) throws(FieldSyncError) -> RecordState? {
        var state: RecordState?
        try db.query("SELECT state FROM fs_shadow WHERE type = ? AND id = ?", [.text(type), .text(id)]) { (row) throws(FieldSyncError) -> Bool in
            state = RecordState(json: try row.storedObject(0, "fs_shadow.state of \(type)/\(id)"))
            return false
        }
        return state
    }

    package func audit(_ filter: JSON) throws(FieldSyncError) -> [AuditRow] {
        try AuditLog.query(filter, deviceId: deviceId, db: db)
    }
}

extension JSON {
    /// How fs_meta stores a value: integers as integers, everything else as text.
    var sqlLiteral: SQLValue {
        switch self {
        case .int(let i): .int(i)
        case .string(let s): .text(s)
        default: .text(text)
        }
    }
}

package func systemWallClock() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) &* 1000 &+ Int64(ts.tv_nsec) / 1_000_000
}

func isDeviceId(_ s: String) -> Bool {
    let bytes = Array(s.utf8)
    guard !bytes.isEmpty, bytes.count <= 64 else { return false }
    return bytes.allSatisfy { b in
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 95 || b == 46 || b == 58 || b == 45
    }
}

func newDeviceId() -> String {
    var rng = SystemRandomNumberGenerator()
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = Array("dev-".utf8)
    for _ in 0..<16 { out.append(digits[Int(rng.next() % 16)]) }
    return String(decoding: out, as: UTF8.self)
}
