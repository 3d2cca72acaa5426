// The hub's storage: every SQL statement the hub runs, behind one type, over
// either database (SQLDatabase.swift): a SQLite file, or a PostgreSQL
// database that several hub processes share (docs/ARCHITECTURE.md "Hub
// storage"). The merge logic never sees which.

final class HubStorage {
    let db: any SQLDatabase
    let views: [String: LocalView]
    /// Ours alone: written with the change sequence, so a PostgreSQL hub
    /// process knows whether the last records written were its own.
    private let writer: String
    /// The change sequence, its writer and the schema version as this
    /// process last saw them.
    private var seen: (seq: Int64, writer: String, schema: String)?

    static let ddl = [
        "CREATE TABLE fs_meta(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID",
        // Current state of each record; `seq` is the server sequence of its
        // latest change, so the change log is "records with seq > cursor".
        """
        CREATE TABLE fs_hub_records(type TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY(type, id)) WITHOUT ROWID
        """,
        "CREATE INDEX fs_hub_records_seq ON fs_hub_records(seq)",
        // What was decided for every entry ever received: the idempotency
        // ledger. `reason` holds a rejection's reason, or an applied entry's
        // per-field resolutions; `digest` the entry's content (Wire.Entry.digest),
        // NULL in rows of hubs made before it was kept.
        """
        CREATE TABLE fs_hub_applied(device TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
            reason TEXT, server_seq INTEGER, received_at INTEGER NOT NULL, digest TEXT, PRIMARY KEY(device, seq)) WITHOUT ROWID
        """,
        """
        CREATE TABLE fs_hub_audit(device TEXT NOT NULL, audit_id INTEGER NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, input TEXT NOT NULL,
            device_time INTEGER NOT NULL, hlc INTEGER NOT NULL, outbox_keys TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL, server_received_at INTEGER NOT NULL,
            hash_ok INTEGER NOT NULL, link_ok INTEGER, PRIMARY KEY(device, audit_id)) WITHOUT ROWID
        """,
        """
        CREATE TABLE fs_hub_conflicts(type TEXT NOT NULL, field TEXT NOT NULL, policy TEXT NOT NULL,
            writes INTEGER NOT NULL DEFAULT 0, concurrent INTEGER NOT NULL DEFAULT 0, won INTEGER NOT NULL DEFAULT 0,
            lost INTEGER NOT NULL DEFAULT 0, merged INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
            resolved INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(type, field)) WITHOUT ROWID
        """,
    ]

    init(db: any SQLDatabase, schema: Schema) throws(FieldSyncError) {
        self.db = db
        writer = Hex.encode(try Ed25519.randomBytes(16))
        self.views = schema.types.mapValues(LocalView.init(spec:))
    }

    func create(schema: Schema) throws(FieldSyncError) {
        for sql in HubStorage.ddl + HubStorage.registryDDL { try db.exec(db.dialect.ddl(sql)) }
        for name in views.keys.sorted() { try db.exec(views[name]?.ddl(db.dialect) ?? "") }
        try setMeta("format", .int(1))
        try setMeta("role", .string("hub"))
        try setMeta("schema", .string(schema.canonical))
        try setMeta("schema_version", .int(schema.version))
        try setMeta("seq", .int(0))
        try setMeta("generation", .int(1))
    }

    /// A value of fs_meta: integers and strings in SQLite, JSON in PostgreSQL.
    func meta(_ key: String) throws(FieldSyncError) -> JSON? {
        if let sqlite = db as? Connection { return try Store.meta(key, db: sqlite) }
        var value: JSON?
        try db.select(HubStorage.pgMeta, [.text(key)]) { (r) throws(FieldSyncError) -> Bool in
            value = r.isNull(0) ? .null : try r.storedJSON(0, "fs_meta.value of \(key)")
            return false
        }
        return value
    }
    private static let pgMeta = PreparedSQL("SELECT value FROM fs_meta WHERE key = ?")

    /// Brings a hub file made by an older version up to today's tables
    /// (inside the caller's transaction).
    func upgrade() throws(FieldSyncError) {
        // A PostgreSQL hub's tables were made as they are today.
        guard db.dialect == .sqlite else { return }
        if try db.scalar("SELECT count(*) FROM pragma_table_info('fs_hub_applied') WHERE name = 'digest'") == 0 {
            try db.exec("ALTER TABLE fs_hub_applied ADD COLUMN digest TEXT")
        }
        for sql in HubStorage.registryDDL { try db.exec(sql) }
        // A hub made before generations were kept is the first of its line.
        try db.exec("INSERT OR IGNORE INTO fs_meta(key, value) VALUES('generation', 1)")
    }

    /// Counters kept in fs_meta (refusals that leave no row behind).
    func increment(_ key: String, by n: Int64 = 1) throws(FieldSyncError) {
        switch db.dialect {
        case .sqlite:
            try db.run("INSERT INTO fs_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                       [.text(key), .int(n)])
        case .postgres:
            // One statement: the row is locked and added to, never read and written back.
            try db.run("""
                INSERT INTO fs_meta(key, value) VALUES(?, to_jsonb(?)) ON CONFLICT(key)
                DO UPDATE SET value = to_jsonb(fs_meta.value::bigint + excluded.value::bigint)
                """, [.text(key), .int(n)])
        }
    }

    func countKeyReused() throws(FieldSyncError) { try increment("entries_key_reused") }

    /// Moves the hub to a newer schema (inside the caller's transaction):
    /// record states take the new field names and defaults, and the plain
    /// tables whose shape changed are rebuilt from them.
    func migrate(from old: Schema, to schema: Schema) throws(FieldSyncError) {
        kept.forgetAll()
        var rows: [(type: String, id: String, seq: Int64, state: RecordState)] = []
        try db.select("SELECT type, id, seq, state FROM fs_hub_records") { (r) throws(FieldSyncError) -> Bool in
            let (type, id) = (r.text(0), r.text(1))
            rows.append((type, id, r.int(2), RecordState(json: try r.storedObject(3, "fs_hub_records.state of \(type)/\(id)"))))
            return true
        }
        let rebuilt = try schema.migrateTables(db: db, from: old, views: views)
        for row in rows {
            guard schema.types[row.type] != nil else {
                try db.run("DELETE FROM fs_hub_records WHERE type = ? AND id = ?", [.text(row.type), .text(row.id)])
                continue
            }
            let state = schema.migrate(row.state, type: row.type, from: old)
            try db.run("UPDATE fs_hub_records SET state = ? WHERE type = ? AND id = ?",
                       [.bytes(state.text(tags: true)), .text(row.type), .text(row.id)])
            if rebuilt.contains(row.type), !state.deleted { try views[row.type]?.save(row.id, state.fields, db: db) }
        }
        try setMeta("schema", .string(schema.canonical))
        try setMeta("schema_version", .int(schema.version))
        try setMeta("migrated_from", .int(old.version))
    }

    func setMeta(_ key: String, _ value: JSON) throws(FieldSyncError) {
        switch db.dialect {
        case .sqlite: try db.run("INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)", [.text(key), value.sqlLiteral])
        case .postgres:
            try db.run("INSERT INTO fs_meta(key, value) VALUES(?, CAST(? AS JSONB)) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       [.text(key), .text(value.text)])
        }
    }

    // MARK: idempotency ledger

    static let selectDecision = PreparedSQL("SELECT status, reason, server_seq, digest FROM fs_hub_applied WHERE device = ? AND seq = ?")
    static let insertDecision = PreparedSQL(
        "INSERT INTO fs_hub_applied(device, seq, status, reason, server_seq, received_at, digest) VALUES(?,?,?,?,?,?,?)")

    func decision(device: String, seq: Int64) throws(FieldSyncError) -> Decisions.Decision? {
        var found: Decisions.Decision?
        try db.select(HubStorage.selectDecision, [.text(device), .int(seq)]) { r in
            found = (r.text(0), r.optionalText(1), r.optionalInt(2), r.optionalText(3))
            return false
        }
        return found
    }

    /// The decisions already taken on a request's entries, read with one
    /// statement per run of seqs, and those taken while it is handled: a
    /// seq sent twice in one request is a duplicate the second time.
    struct Decisions {
        typealias Decision = (status: String, reason: String?, serverSeq: Int64?, digest: String?)
        let device: String
        /// The runs of seqs read: a seq in them and not in `known` has no decision.
        let covered: [ClosedRange<Int64>]
        var known: [Int64: Decision]

        func find(_ seq: Int64, in storage: HubStorage) throws(FieldSyncError) -> Decision? {
            if let decided = known[seq] { return decided }
            return covered.contains { $0.contains(seq) } ? nil : try storage.decision(device: device, seq: seq)
        }

        mutating func record(seq: Int64, status: String, reason: String?, serverSeq: Int64?, digest: String, at: Int64,
                             in storage: HubStorage) throws(FieldSyncError) {
            let row: [SQLValue] = [.text(device), .int(seq), .text(status), reason.map(SQLValue.text) ?? .null,
                                   serverSeq.map(SQLValue.int) ?? .null, .int(at), .text(digest)]
            // Written at flush with the request's other rows (writeRows).
            storage.decided.append(row)
            known[seq] = (status, reason, serverSeq, digest)
        }
    }

    func decisions(device: String, seqs: [Int64]) throws(FieldSyncError) -> Decisions {
        var decisions = Decisions(device: device, covered: consecutiveRuns(seqs), known: [:])
        for run in decisions.covered {
            try db.select(HubStorage.selectDecisions, [.text(device), .int(run.lowerBound), .int(run.upperBound)]) { r in
                decisions.known[r.int(0)] = (r.text(1), r.optionalText(2), r.optionalInt(3), r.optionalText(4))
                return true
            }
        }
        return decisions
    }
    static let selectDecisions = PreparedSQL(
        "SELECT seq, status, reason, server_seq, digest FROM fs_hub_applied WHERE device = ? AND seq BETWEEN ? AND ?")

    // MARK: records

    /// Records and conflict counts one request touched, written once when the
    /// request's changes are complete (a record changed by 50 entries of a
    /// batch is read once and written once).
    private var dirty: [ExactString: (type: String, id: String, state: RecordState, seq: Int64)] = [:]
    /// The ledger rows the request's decisions make (Decisions.record), written at flush.
    fileprivate var decided: [[SQLValue]] = []
    private var counts: [ExactString: (type: String, field: String, policy: String, columns: [Int64])] = [:]

    /// States as last committed (StateCache.swift).
    private var kept = StateCache()

    func record(type: String, id: String) throws(FieldSyncError) -> (state: RecordState, seq: Int64)? {
        let key = ExactString(type, id)
        if let cached = dirty[key] { return (cached.state, cached.seq) }
        if let cached = kept[key] { return (cached.state, cached.version) }
        var found: (state: RecordState, seq: Int64)?
        try db.select(HubStorage.selectRecord, [.text(type), .text(id)]) { (r) throws(FieldSyncError) -> Bool in
            found = (RecordState(json: try r.storedObject(0, "fs_hub_records.state of \(type)/\(id)")), r.int(1))
            return false
        }
        if let found { kept.read(key, (found.state, found.seq)) }
        return found
    }

    /// Call first in each request's transaction: forgets the kept states if
    /// another connection has committed since, and says so (the caller then
    /// rereads what it keeps too).
    ///
    /// In PostgreSQL, a request that writes (`locking`) first locks the
    /// change sequence's row until it commits: writers take numbers one at a
    /// time, in the order they commit, so a pull (which never waits) sees
    /// every change up to the last it returns and none is ever passed over
    /// by a cursor (docs/ARCHITECTURE.md "Hub storage"). Kept states stay
    /// valid while the sequence still stands where this process left it.
    func beginRequest(locking: Bool) throws(FieldSyncError) -> Bool {
        if let sqlite = db as? Connection { return try kept.begin(sqlite) }
        var now: (seq: Int64, writer: String, schema: String) = (0, "", "")
        try db.select(locking ? HubStorage.lockSequence : HubStorage.readSequence) { r in
            switch r.text(0) {
            case "seq": now.seq = r.int(1)
            case "writer": now.writer = r.text(1)
            default: now.schema = r.text(1)
            }
            return true
        }
        defer { seen = now }
        guard let seen, seen == now else {
            kept.forgetAll()
            return true
        }
        return false
    }
    private static let lockSequence = PreparedSQL(
        "SELECT key, value #>> '{}' FROM fs_meta WHERE key IN ('seq', 'writer', 'schema_version') ORDER BY key FOR UPDATE")
    private static let readSequence = PreparedSQL(
        "SELECT key, value #>> '{}' FROM fs_meta WHERE key IN ('seq', 'writer', 'schema_version')")

    /// Moves the change sequence on (inside the request's transaction).
    func setSequence(_ seq: Int64) throws(FieldSyncError) {
        guard db.dialect == .postgres else { return try setMeta("seq", .int(seq)) }
        try db.run(HubStorage.pgSetSequence, [.int(seq), .text(JSON.string(writer).text)])
        pending = (seq, writer, seen?.schema ?? "")
    }
    private static let pgSetSequence = PreparedSQL("""
        INSERT INTO fs_meta(key, value) VALUES('seq', to_jsonb(?)), ('writer', CAST(? AS JSONB))
        ON CONFLICT(key) DO UPDATE SET value = excluded.value
        """)
    private var pending: (seq: Int64, writer: String, schema: String)?

    /// After each request: what it wrote becomes the kept state if it
    /// committed; if not, nothing kept can be trusted.
    func endRequest(committed: Bool) {
        decided = []
        kept.end(committed: committed)
        if committed, let pending { seen = pending }
        if !committed { seen = nil }
        pending = nil
        dirty = [:]
        counts = [:]
    }

    func save(type: String, id: String, state: RecordState, seq: Int64) {
        dirty[ExactString(type, id)] = (type, id, state, seq)
    }

    /// Writes what the request changed. Must run before anything reads the
    /// tables (pulls), inside the request's transaction.
    func flush() throws(FieldSyncError) {
        try writeRows(decided, each: HubStorage.insertDecision, batch: HubStorage.batchDecisions)
        decided = []
        var records: [[SQLValue]] = []
        var saved: [String: [[SQLValue]]] = [:]
        var deleted: [String: [[SQLValue]]] = [:]
        for (key, r) in dirty {
            records.append([.text(r.type), .text(r.id), .int(r.seq), .bytes(r.state.text(tags: true))])
            kept.wrote(key, (r.state, r.seq))
            guard let view = views[r.type] else { continue }
            if r.state.deleted { deleted[r.type, default: []].append([.text(r.id)]) } else { saved[r.type, default: []].append(view.row(r.id, r.state.fields)) }
        }
        dirty = [:]
        try writeRows(records, each: HubStorage.upsertRecord, batch: HubStorage.batchRecords)
        for (type, rows) in saved {
            guard let view = views[type] else { continue }
            try writeRows(rows, each: view.upsert, batch: view.batchUpsert)
        }
        for (type, rows) in deleted {
            guard let view = views[type] else { continue }
            try writeRows(rows, each: view.deleteOne, batch: view.batchDelete)
        }
        for (_, c) in counts {
            try db.run("""
                INSERT INTO fs_hub_conflicts AS c(type, field, policy, writes, concurrent, won, lost, merged, rejected, resolved)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(type, field) DO UPDATE SET writes = c.writes + excluded.writes,
                    concurrent = c.concurrent + excluded.concurrent, won = c.won + excluded.won, lost = c.lost + excluded.lost,
                    merged = c.merged + excluded.merged, rejected = c.rejected + excluded.rejected, resolved = c.resolved + excluded.resolved
                """, [.text(c.type), .text(c.field), .text(c.policy)] + c.columns.map(SQLValue.int))
        }
        counts = [:]
    }

    static let selectRecord = PreparedSQL("SELECT state, seq FROM fs_hub_records WHERE type = ? AND id = ?")
    static let upsertRecord = PreparedSQL("""
        INSERT INTO fs_hub_records(type, id, seq, state) VALUES(?, ?, ?, ?)
        ON CONFLICT(type, id) DO UPDATE SET seq = excluded.seq, state = excluded.state
        """)

    /// A page of the change log after `cursor`, oldest change first: the
    /// records (their state is read only for those not `skipped`), the
    /// page's last sequence and size, and whether it stopped because the
    /// states read passed `budget` bytes (the first one always goes).
    func changes(after cursor: Int64, limit: Int64, budget: Int, skipping skipped: (String, String) -> Bool = { _, _ in false })
        throws(FieldSyncError) -> (changes: [(type: String, id: String, seq: Int64, state: RecordState)], last: Int64?, count: Int64, full: Bool) {
        var out: [(String, String, Int64, RecordState)] = []
        var last: Int64?
        var count: Int64 = 0
        var bytes = 0
        var full = false
        try db.select(HubStorage.selectChanges, [.int(cursor), .int(limit)]) { (r) throws(FieldSyncError) -> Bool in
            if bytes >= budget && count > 0 {
                full = true
                return false
            }
            let type = r.text(0), id = r.text(1)
            last = r.int(2)
            count += 1
            if !skipped(type, id) {
                bytes += r.bytes(3)?.count ?? 0
                out.append((type, id, r.int(2), RecordState(json: try r.storedObject(3, "fs_hub_records.state of \(type)/\(id)"))))
            }
            return true
        }
        return (out, last, count, full)
    }
    static let selectChanges = PreparedSQL("SELECT type, id, seq, state FROM fs_hub_records WHERE seq > ? ORDER BY seq LIMIT ?")

    // MARK: audit

    /// Stores a device's audit rows once each, checking every row's hash and
    /// its link to the previous row (and the next one's link, when rows arrive
    /// out of order). Returns each row's server_received_at, and the ids of
    /// rows refused because the hub holds another row under that id (a
    /// store restored from an old backup, two devices given one device_id):
    /// those are never acknowledged, and the stored row stays as it is.
    func storeAudit(_ rows: [AuditRow], device: String, receivedAt: Int64) throws(FieldSyncError)
        -> (acks: [(id: Int64, at: Int64)], refused: [Int64]) {
        guard !rows.isEmpty else { return ([], []) }
        let highest = try db.scalar("SELECT max(audit_id) FROM fs_hub_audit WHERE device = ?", [.text(device)]) ?? 0
        var acks: [(Int64, Int64)] = []
        var refused: [Int64] = []
        var previous: (id: Int64, hash: String)?
        // The new rows are written together (writeRows).
        var pending: [[SQLValue]] = []
        func insertPending() throws(FieldSyncError) {
            try writeRows(pending, each: HubStorage.insertAudit, batch: HubStorage.batchAudit)
            pending = []
        }
        for row in rows.sorted(by: { $0.auditId < $1.auditId }) {
            let inputText = row.input.bytes
            // A row sent twice in one request is compared with the first, stored.
            if row.auditId == previous?.id { try insertPending() }
            // A row stored before, or earlier in this request.
            if row.auditId <= highest || row.auditId == previous?.id,
               let stored = try storedAudit(device: device, id: row.auditId, matching: row, input: inputText) {
                if stored.same { acks.append((row.auditId, stored.at)) } else { refused.append(row.auditId) }
                continue
            }
            // Safe: audit ids are 1...Wire.maxSeq (Wire.auditRow).
            var before: String? = row.auditId == 1 ? AuditRow.genesis : nil
            if let previous, previous.id == row.auditId - 1 { before = previous.hash }
            if before == nil {
                try db.select(HubStorage.hashOf, [.text(device), .int(row.auditId - 1)]) { r in
                    before = r.text(0)
                    return false
                }
            }
            let linkOK: SQLValue = before.map { .int($0 == row.prevHash ? 1 : 0) } ?? .null
            let values: [SQLValue] = [
                .text(device), .int(row.auditId), .text(row.actor), .text(row.action), .text(row.type), .text(row.id),
                .bytes(inputText), .int(row.deviceTime), .int(row.hlc), .bytes(AuditLog.keysText(row.outboxKeys)),
                .text(row.prevHash), .text(row.hash), .int(receivedAt),
                .int(try row.computedHash(input: inputText) == row.hash ? 1 : 0), linkOK]
            pending.append(values)
            // A row after this one may have arrived first: its link can be checked now.
            if row.auditId < highest {
                try db.run("UPDATE fs_hub_audit SET link_ok = CASE WHEN prev_hash = ? THEN 1 ELSE 0 END WHERE device = ? AND audit_id = ?",
                           [.text(row.hash), .text(device), .int(row.auditId + 1)])
            }
            previous = (row.auditId, row.hash)
            acks.append((row.auditId, receivedAt))
        }
        try insertPending()
        if !refused.isEmpty { try increment("audit_reused", by: Int64(refused.count)) }
        return (acks, refused)
    }

    /// The stored row under (device, id), if any: when it was received, and
    /// whether `row` is the same row (a resend) in every member the device decided.
    private func storedAudit(device: String, id: Int64, matching row: AuditRow, input: [UInt8]) throws(FieldSyncError)
        -> (at: Int64, same: Bool)? {
        var found: (Int64, Bool)?
        let keys = AuditLog.keysText(row.outboxKeys)
        try db.select(HubStorage.storedAudit, [.text(device), .int(id)]) { r in
            let same = equalUTF8(r.text(1), row.hash) && equalUTF8(r.text(2), row.prevHash) && equalUTF8(r.text(3), row.actor) && equalUTF8(r.text(4), row.action)
                && equalUTF8(r.text(5), row.type) && equalUTF8(r.text(6), row.id) && r.int(7) == row.deviceTime && r.int(8) == row.hlc
                && r.bytes(9).map(Array.init) == input && r.bytes(10).map(Array.init) == keys
            found = (r.int(0), same)
            return false
        }
        return found
    }
    static let storedAudit = PreparedSQL("""
        SELECT server_received_at, hash, prev_hash, actor, action, type, id, device_time, hlc, input, outbox_keys
        FROM fs_hub_audit WHERE device = ? AND audit_id = ?
        """)

    static let hashOf = PreparedSQL("SELECT hash FROM fs_hub_audit WHERE device = ? AND audit_id = ?")
    static let insertAudit = PreparedSQL("""
        INSERT INTO fs_hub_audit(device, audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys,
            prev_hash, hash, server_received_at, hash_ok, link_ok) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
        """)

    func auditRows(_ filter: JSONObject) throws(FieldSyncError) -> [JSON] {
        let (clauses, values) = try auditFilter(filter, columns: ["device_id": "a.device", "type": "a.type", "id": "a.id",
                                                                   "actor": "a.actor", "action": "a.action"], deviceTime: "a.device_time")
        var sql = """
            SELECT a.device, a.audit_id, a.actor, a.action, a.type, a.id, a.input, a.device_time, a.hlc, a.outbox_keys,
                   a.prev_hash, a.hash, a.server_received_at, a.hash_ok, a.link_ok, d.status, d.reason
            FROM fs_hub_audit a LEFT JOIN fs_hub_applied d ON d.device = a.device AND d.seq = a.audit_id
            """
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        let desc = filter["desc"]?.bool == true
        let (order, limit) = try orderAndLimit(filter, column: "a.device", tieBreak: "a.audit_id\(desc ? " DESC" : "")", context: "audit filter")
        var rows: [JSON] = []
        try db.selectOnce(sql + order, values + [limit]) { (r) throws(FieldSyncError) -> Bool in
            let place = "fs_hub_audit row \(r.text(0))/\(r.int(1))"
            let keys = try r.storedJSON(9, "\(place): outbox_keys")
            guard keys.array != nil else { throw .corrupt("\(place): outbox_keys is \(keys.kind), not an array") }
            rows.append(.object([
                "device_id": .string(r.text(0)), "audit_id": .int(r.int(1)), "actor": .string(r.text(2)),
                "action": .string(r.text(3)), "type": .string(r.text(4)), "id": .string(r.text(5)),
                "input": try r.storedJSON(6, "\(place): input"), "device_time": .int(r.int(7)),
                "hlc": .int(r.int(8)), "outbox_keys": keys,
                "prev_hash": .string(r.text(10)), "hash": .string(r.text(11)), "server_received_at": .int(r.int(12)),
                "chain_ok": .bool(r.int(13) == 1 && r.optionalInt(14) != 0),
                "outcome": .string(r.optionalText(15).map { $0 == "applied" || $0 == "rejected" ? $0 : "pending" } ?? "pending"),
                "reason": r.optionalText(16).map(JSON.string) ?? .null,
            ]))
            return true
        }
        return rows
    }

    // MARK: conflict accounting

    func count(_ report: MergeReport, type: String, spec: TypeSpec) {
        // Columns: writes, concurrent, won, lost, merged, rejected, resolved.
        for (field, resolution) in report.fields {
            let key = ExactString(type, field)
            var entry = counts[key] ?? (type, field, spec.field(field)?.merge.rawValue ?? "lww", [0, 0, 0, 0, 0, 0, 0])
            entry.columns[0] += 1
            if resolution != .clean { entry.columns[1] += 1 }
            switch resolution {
            case .clean: break
            case .won: entry.columns[2] += 1
            case .lost: entry.columns[3] += 1
            case .merged: entry.columns[4] += 1
            case .rejected: entry.columns[5] += 1
            case .resolved: entry.columns[6] += 1
            }
            counts[key] = entry
        }
    }
}

// MARK: the database itself

extension HubStorage {
    /// Processes opening one PostgreSQL hub at once take turns (inside the
    /// caller's transaction): one makes the tables, migrates them or makes
    /// the hub's key, the others then find them made.
    func lockOpen() throws(FieldSyncError) {
        if db.dialect == .postgres { try db.exec("SELECT pg_advisory_xact_lock(\(HubStorage.openLock))") }
    }
    private static let openLock: Int64 = 0x6673_6875_6200   // "fshub"

    /// Whether the database holds a hub's tables.
    func exists() throws(FieldSyncError) -> Bool {
        switch db.dialect {
        case .sqlite: try db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fs_meta'") ?? 0 > 0
        case .postgres: try db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'fs_meta'") ?? 0 > 0
        }
    }

    /// Whether it holds anything at all (then it is not ours to make a hub in).
    func holdsTables() throws(FieldSyncError) -> Bool {
        switch db.dialect {
        case .sqlite: try db.scalar("SELECT count(*) FROM sqlite_master") ?? 0 > 0
        case .postgres: try db.scalar("SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace") ?? 0 > 0
        }
    }

    /// A PostgreSQL hub's answer to "was I restored?" (HubRestore.swift): the
    /// database's identity (its cluster's system identifier, its own oid,
    /// fs_meta's oid, the timeline) is kept; a database restored with
    /// pg_restore (into a new database, or over this one with --clean: the
    /// tables are made again), or by point-in-time recovery, or promoted
    /// from a replica that may lag, has another one, and is then the next
    /// generation, as a SQLite hub's backup copy is. Returns the generation. (A SQLite hub's
    /// copies are made by fs_hub_backup, which numbers them.)
    func checkIdentity(at now: Int64) throws(FieldSyncError) -> Int64 {
        guard db.dialect == .postgres else { return try meta("generation")?.int ?? 1 }
        var identity = ""
        try db.select(HubStorage.identity) { r in
            identity = r.text(0)
            return false
        }
        let generation = try meta("generation")?.int ?? 1
        guard let stored = try meta("identity")?.string else {
            try setMeta("identity", .string(identity))
            return generation
        }
        guard stored != identity else { return generation }
        try increment("generation")
        try setMeta("identity", .string(identity))
        try logRefusalRow(device: "", code: "restored_hub", message: """
            the database is another copy than the one this hub last ran on (identity \(stored) -> \(identity)): \
            generation \(generation) -> \(generation + 1); devices send again what it lost
            """, at: now)
        return generation + 1
    }

    // Each part only when this role may read it (pg_control_* are for
    // superusers and pg_monitor by default); the database's oid always.
    private static let identity = PreparedSQL("""
        SELECT concat_ws(':',
            CASE WHEN has_function_privilege('pg_control_system()', 'execute')
                 THEN (SELECT system_identifier::text FROM pg_control_system()) END,
            (SELECT oid::text FROM pg_database WHERE datname = current_database()),
            to_regclass('fs_meta')::oid::text,
            CASE WHEN has_function_privilege('pg_control_checkpoint()', 'execute')
                 THEN (SELECT timeline_id::text FROM pg_control_checkpoint()) END)
        """)
}
