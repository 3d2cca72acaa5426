// The hub (DESIGN §6): a pure request -> response function over its own
// SQLite file. It deduplicates, merges per field with the same rules devices
// use, numbers changes, keeps the audit trail and answers pulls.

package final class Hub {
    let storage: HubStorage
    package let schema: Schema
    /// Wall clock in ms since the epoch; replaced by tests and hosts.
    package var wallClock: () -> Int64 = systemWallClock
    /// Custom-merge resolvers registered by the host, by the schema's resolver name.
    package var resolvers: [String: (JSON) -> Result<JSON, FieldSyncError>] = [:]
    private var seq: Int64

    package convenience init(path: String, schemaJSON: String, optionsJSON: String?) throws(FieldSyncError) {
        let options = try optionsJSON.map { (text) throws(FieldSyncError) -> JSON in try JSON.parse(text, what: "options") } ?? .null
        try self.init(path: path, schema: Schema(json: schemaJSON), options: options)
    }

    package init(path: String, schema: Schema, options: JSON) throws(FieldSyncError) {
        guard let opts = options.isNull ? [:] : options.object else { throw .arg("options must be a JSON object, got \(options.kind)") }
        try checkKeys(opts, allowed: ["durability", "busy_timeout_ms"], in: "hub options", code: FieldSyncError.arg)
        let db = try Connection.openDatabase(path: path, options: opts)
        let storage = HubStorage(db: db, schema: schema)
        try db.transaction { () throws(FieldSyncError) in
            if try db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fs_meta'") == 0 {
                if try db.scalar("SELECT count(*) FROM sqlite_master") ?? 0 > 0 {
                    throw .corrupt("\(path) holds tables but is not a fieldsync hub (no fs_meta)")
                }
                try storage.create(schema: schema)
                return
            }
            guard try storage.meta("role")?.string == "hub", let stored = try storage.meta("schema")?.string,
                  let version = try storage.meta("schema_version")?.int else {
                throw .corrupt("\(path) is not a fieldsync hub database (a device store, or damaged)")
            }
            if schema.version < version { throw .schema("the hub holds schema version \(version); version \(schema.version) is older (no downgrade)") }
            if schema.version > version {
                try storage.migrate(from: Schema.stored(stored), to: schema)
                return
            }
            if schema.canonical != stored { throw .schema("the schema differs from the one stored with the same version \(version) (\(Schema.describeChanges(from: stored, to: schema))); give it a new version") }
        }
        self.storage = storage
        self.schema = schema
        self.seq = try storage.meta("seq")?.int ?? 0
    }

    package func close() { storage.db.close() }

    // MARK: handle

    package func handle(_ request: JSON) throws(FieldSyncError) -> JSON {
        guard let r = request.object else { throw .arg("request must be a JSON object, got \(request.kind)") }
        guard let proto = r["protocol"]?.int, proto >= 1 else { throw .arg("request: \"protocol\" must be an integer >= 1") }
        guard let device = r["device_id"]?.string, isDeviceId(device) else { throw .arg("request: \"device_id\" is missing or invalid") }
        guard let batch = r["batch"]?.string else { throw .arg("request: \"batch\" must be a string") }
        guard let clientVersion = r["schema_version"]?.int else { throw .arg("request: \"schema_version\" must be an integer") }
        let cursor = r["cursor"]?.int ?? 0
        let limit = min(max(r["limit"]?.int ?? 1000, 1), 10_000)
        let pull = r["pull"]?.bool ?? true
        let entries = try optionalArray(r, "entries", in: "request").map(Wire.Entry.init)
        let auditRows = try optionalArray(r, "audit", in: "request").map { (row) throws(FieldSyncError) -> AuditRow in try Wire.auditRow(row, device: device) }
        let fetch = try optionalArray(r, "fetch", in: "request")
        if fetch.count > 1000 { throw .tooBig("request: at most 1000 records per fetch") }
        let scope = try checkedScope(r["scope"], clientVersion: r["schema_version"]?.int ?? schema.version)
        let now = wallClock()

        if proto > Wire.version {
            return Wire.error("protocol_unsupported", "this hub speaks protocol \(Wire.version); the request uses \(proto)",
                              device: device, batch: batch, serverTime: now)
        }
        if clientVersion < schema.minClientVersion {
            return Wire.error("upgrade_required", "schema version \(clientVersion) is below the minimum \(schema.minClientVersion)",
                              device: device, batch: batch, serverTime: now)
        }
        // Keys are checked before anything is applied: a request carrying
        // another device's entries is refused whole.
        for e in entries {
            guard let key = e.key, let s = e.seq, key == Outbox.key(device: device, seq: s) else {
                throw .arg("request: every entry needs \"key\" = \"<device_id>-<seq>\" of the sending device")
            }
        }

        var committed = false
        defer { storage.endRequest(committed: committed) }
        let response = try storage.db.transaction { () throws(FieldSyncError) -> JSON in
            // Another hub handle on this file may have moved the change log on.
            if try storage.beginRequest() { self.seq = try storage.meta("seq")?.int ?? 0 }
            var seq = self.seq
            var results: [JSON] = []
            var held: Set<ExactString> = []
            var own: [ExactString: OwnRecord] = [:]
            var decisions = try storage.decisions(device: device, seqs: entries.compactMap(\.seq))
            for e in entries {
                let (result, applied) = try apply(entry: e, device: device, clientVersion: clientVersion, seq: &seq, held: &held,
                                                  own: &own, decisions: &decisions, now: now)
                // A record with an entry not applied now (duplicate, retry,
                // rejected) is sent back whole, as before.
                if !applied {
                    own[ExactString(e.type, e.id), default: OwnRecord(type: e.type, id: e.id, prior: 0, seq: 0, eligible: false)].eligible = false
                }
                results.append(result)
            }
            let owned = own.values.filter(\.eligible).sorted { $0.seq < $1.seq }
            let ownKeys = Set(owned.map { ExactString($0.type, $0.id) })
            try storage.flush()
            let acks = try storage.storeAudit(auditRows, device: device, receivedAt: now).map { ack in
                JSON.object(["audit_id": .int(ack.id), "server_received_at": .int(ack.at)])
            }
            if seq != self.seq { try storage.setMeta("seq", .int(seq)) }

            var response: JSONObject = [
                "audit_acks": .array(acks), "batch": .string(batch), "device_id": .string(device),
                "protocol": .int(Wire.version), "results": .array(results), "server_time": .int(now),
            ]
            if !owned.isEmpty {
                response["own"] = .array(owned.map { record in
                    .object(["id": .string(record.id), "prior": .int(record.prior), "seq": .int(record.seq), "type": .string(record.type)])
                })
            }
            if !fetch.isEmpty {
                var found: [JSON] = [], missing: [JSON] = []
                for ref in fetch {
                    let type = ref["type"]?.string ?? "", id = ref["id"]?.string ?? ""
                    if let (state, recordSeq) = try storage.record(type: type, id: id) {
                        found.append(.object(["type": .string(type), "id": .string(id), "seq": .int(recordSeq),
                                              "state": schema.downcast(state, type: type, to: clientVersion).shadowJSON]))
                    } else {
                        missing.append(.object(["type": .string(type), "id": .string(id)]))
                    }
                }
                response["fetched"] = .array(found)
                response["missing"] = .array(missing)
            }
            if pull {
                // Records answered as "own" are not sent back: the device
                // already holds exactly their state.
                let page = try storage.changes(after: cursor, limit: limit) { type, id in ownKeys.contains(ExactString(type, id)) }
                // An old client gets records in the shape its schema version knows.
                response["changes"] = .array(page.changes.filter { inScope($0.type, $0.state, scope) }.map { change in
                    .object(["id": .string(change.id), "seq": .int(change.seq),
                             "state": schema.downcast(change.state, type: change.type, to: clientVersion).shadowJSON,
                             "type": .string(change.type)])
                })
                response["cursor"] = .int(page.last ?? max(cursor, 0))
                response["more"] = .bool(page.count == limit)
            }
            self.seq = seq
            return .object(response)
        }
        committed = true
        return response
    }

    /// A record this request changed, and whether the device may rebuild its
    /// new state from the state it held (`prior`) plus its own entries.
    struct OwnRecord {
        var type: String
        var id: String
        var prior: Int64
        var seq: Int64
        var eligible: Bool
    }

    /// Decides one entry; records the decision so a resend gets the same answer.
    /// Returns the entry's result, and whether it was applied now.
    private func apply(entry e: Wire.Entry, device: String, clientVersion: Int64, seq: inout Int64, held: inout Set<ExactString>,
                       own: inout [ExactString: OwnRecord], decisions: inout HubStorage.Decisions,
                       now: Int64) throws(FieldSyncError) -> (JSON, Bool) {
        let key = e.key ?? "", entrySeq = e.seq ?? 0
        if let done = try decisions.find(entrySeq, in: storage) {
            var result: JSONObject = ["key": .string(key), "status": .string("duplicate"), "outcome": .string(done.status)]
            if let reason = done.reason {
                if done.status == "applied" {
                    do {
                        result["resolutions"] = try JSON.parse(reason, what: "stored resolutions")
                    } catch {
                        throw .corrupt("fs_hub_applied.reason of \(device)/\(entrySeq) cannot be read: \(error.message)")
                    }
                } else {
                    result["reason"] = .string(reason)
                }
            }
            if let s = done.serverSeq { result["server_seq"] = .int(s) }
            return (.object(result), false)
        }
        let type = e.type, id = e.id
        let record = ExactString(type, id)
        func retry(_ reason: String) -> (JSON, Bool) {
            held.insert(record)
            return (.object(["key": .string(key), "reason": .string(reason), "status": .string("retry")]), false)
        }
        // An entry whose predecessor on the same record was not applied waits
        // for it: one record's changes apply in the order they were made.
        if held.contains(record) { return retry("an earlier change of \(type)/\(id) is still to be applied") }
        if let v = e.schemaVersion, v > schema.version {
            return retry("the hub runs schema version \(schema.version); this entry needs \(v)")
        }
        func reject(_ reason: String, _ extra: JSONObject = [:]) throws(FieldSyncError) -> (JSON, Bool) {
            try decisions.record(seq: entrySeq, status: "rejected", reason: reason, serverSeq: nil, at: now, in: storage)
            return (.object(extra.merging(["key": .string(key), "status": .string("rejected"), "reason": .string(reason)]) { a, _ in a }), false)
        }

        // An entry queued under an older schema is upcast to today's field
        // names; a write the chain cannot map is refused, and only that entry.
        var ops = e.ops
        if let version = e.schemaVersion, version < schema.version {
            switch schema.upcast(Change(json: ops), type: type, from: version) {
            case .success(let change): ops = change.json
            case .failure(let refusal): return try reject(refusal.reason, ["detail": .object(["message": .string(refusal.message)])])
            }
        }
        // The hub trusts nothing the device says: the change is checked against
        // the hub's schema exactly as a local action is.
        var shape: JSONObject = ["action": .string("sync"), "actor": .string(device), "type": .string(type), "id": .string(id)]
        for (k, v) in ops.object ?? [:] { shape[k] = v }
        let change: Change
        let spec: TypeSpec
        do {
            change = try Action(json: .object(shape), schema: schema).change
            spec = try schema.type(type)
        } catch {
            return try reject("invalid: \(error.message)")
        }
        guard let hlc = e.hlc else { return try reject("invalid: entry has no \"hlc\" stamp") }

        let existing = try storage.record(type: type, id: id)
        let (current, recordSeq) = existing ?? (RecordState(absent: ()), 0)
        var state = current
        // A record an old client creates gets the defaults of the fields
        // added since its version, as records that existed at the migration did.
        if existing == nil, let version = e.schemaVersion, version < schema.version, !change.delete {
            for (field, value) in schema.defaultsAdded(type: type, after: version) where change.set[field] == nil {
                state.fields[field] = value
            }
        }
        // A base of {"after": n} means "on top of my own entry n": it holds if
        // that entry's write is still the field's latest.
        var base = renamed(e.base, type: type, from: e.schemaVersion)
        for (field, value) in base {
            guard let after = value["after"]?.int else { continue }
            let decided = try decisions.find(after, in: storage)
            base[field] = decided?.status == "applied" ? decided?.serverSeq.map(JSON.int) ?? .null : .string("stale")
        }
        var context = Merge.HubContext(seq: seq + 1, observed: e.cursor, base: base)
        context.baseValues = renamed(e.baseValues, type: type, from: e.schemaVersion)
        context.actor = e.actor
        context.resolve = { [resolvers] field, conflict in
            guard let name = field.resolver, let resolver = resolvers[name] else {
                return .failure(.notFound("no resolver registered under '\(field.resolver ?? "")'"))
            }
            return resolver(conflict)
        }
        let report: MergeReport
        do {
            report = try Merge.merge(change, stamp: Stamp(hlc: hlc, device: device), into: &state, spec: spec, id: id, hub: context)
        } catch {
            return try reject("invalid: \(error.message)")
        }
        storage.count(report, type: type, spec: spec)
        if let refusal = report.rejection {
            let state = schema.downcast(current, type: type, to: clientVersion).shadowJSON
            return try reject(refusal.reason, ["detail": refusal.detail, "state": state, "record_seq": .int(recordSeq)])
        }
        seq += 1
        storage.save(type: type, id: id, state: state, seq: seq)
        // The device can rebuild this state itself when it held the record's
        // state as it was before this request and the change merges the same
        // way on the device (no custom resolver, no observed-remove).
        let sameMerge = clientVersion == schema.version && e.schemaVersion == schema.version
            && change.remove.isEmpty && !change.fields.contains { spec.field($0)?.merge == .custom }
        if var known = own[record] {
            known.eligible = known.eligible && sameMerge
            known.seq = seq
            own[record] = known
        } else {
            own[record] = OwnRecord(type: type, id: id, prior: recordSeq, seq: seq,
                                    eligible: sameMerge && e.shadowSeq == recordSeq)
        }
        // What happened to each field that met a concurrent write, for the
        // device's own accounting (kept so a resend gets the same answer).
        var resolutions: JSONObject = [:]
        for (field, resolution) in report.fields where resolution != .clean { resolutions[field] = .string(resolution.rawValue) }
        let detail: String? = resolutions.isEmpty ? nil : JSON.object(resolutions).text
        try decisions.record(seq: entrySeq, status: "applied", reason: detail, serverSeq: seq, at: now, in: storage)
        var result: JSONObject = ["key": .string(key), "server_seq": .int(seq), "status": .string("applied")]
        if !resolutions.isEmpty { result["resolutions"] = .object(resolutions) }
        return (.object(result), true)
    }

    /// Keys of a per-field map (base versions, base values) in today's names.
    private func renamed(_ fields: JSONObject, type: String, from version: Int64?) -> JSONObject {
        guard let version, version < schema.version else { return fields }
        var out: JSONObject = [:]
        for (field, value) in fields {
            if case .success(let name) = schema.upcast(field: field, type: type, from: version) { out[name] = value }
        }
        return out
    }

    /// A scope maps types to equality filters on their fields.
    private func checkedScope(_ json: JSON?, clientVersion: Int64) throws(FieldSyncError) -> [String: JSONObject] {
        guard let json, !json.isNull else { return [:] }
        guard let o = json.object else { throw .arg("request: \"scope\" must map types to field filters") }
        var scope: [String: JSONObject] = [:]
        for (type, filter) in o {
            let spec = try schema.type(type)
            guard let f = filter.object else { throw .arg("request: scope of '\(type)' must be an object of field: value") }
            var filter: JSONObject = [:]
            for (field, value) in f {
                guard case .success(let name) = schema.upcast(field: field, type: type, from: clientVersion), spec.field(name) != nil else {
                    throw .schema("request: scope names unknown field '\(type).\(field)'")
                }
                filter[name] = value
            }
            scope[type] = filter
        }
        return scope
    }

    /// Tombstones are always in scope: a device must learn of a delete.
    private func inScope(_ type: String, _ state: RecordState, _ scope: [String: JSONObject]) -> Bool {
        guard let filter = scope[type], !state.deleted else { return true }
        return filter.allSatisfy { state.fields[$0.key] ?? .null == $0.value }
    }

    // MARK: reads

    package func query(_ json: JSON) throws(FieldSyncError) -> JSON {
        guard let q = json.object else { throw .arg("a query must be a JSON object, got \(json.kind)") }
        try checkKeys(q, allowed: ["type", "where", "order_by", "desc", "limit"], in: "query", code: FieldSyncError.arg)
        let type = try requiredText(q, "type", in: "query")
        _ = try schema.type(type)
        guard let view = storage.views[type] else { throw .internal("no table for type '\(type)'") }
        return try view.query(q, db: storage.db)
    }

    package func auditQuery(_ filter: JSON) throws(FieldSyncError) -> JSON {
        guard let f = filter.isNull ? [:] : filter.object else { throw .arg("audit filter must be an object, got \(filter.kind)") }
        try checkKeys(f, allowed: ["device_id", "type", "id", "actor", "action", "since", "until", "limit", "desc"],
                      in: "audit filter", code: FieldSyncError.arg)
        return .array(try storage.auditRows(f))
    }

    package func stats() throws(FieldSyncError) -> JSON {
        let db = storage.db
        var stats: JSONObject = ["schema_version": .int(schema.version), "seq": .int(seq)]
        var records: Int64 = 0
        for (name, view) in storage.views {
            let n = try view.count(db: db)
            stats["records_\(name)"] = .int(n)
            records += n
        }
        stats["records"] = .int(records)
        stats["devices"] = .int(try db.scalar("SELECT count(DISTINCT device) FROM fs_hub_applied") ?? 0)
        stats["entries_applied"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_applied WHERE status = 'applied'") ?? 0)
        stats["entries_rejected"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_applied WHERE status = 'rejected'") ?? 0)
        stats["audit_rows"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit") ?? 0)
        stats["audit_hash_failures"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit WHERE hash_ok = 0") ?? 0)
        stats["audit_chain_breaks"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit WHERE link_ok = 0") ?? 0)
        stats["audit_gaps"] = .int(try db.scalar("SELECT coalesce(sum(m - n), 0) FROM (SELECT max(audit_id) AS m, count(*) AS n FROM fs_hub_audit GROUP BY device)") ?? 0)
        // A conflict is a concurrent write where one value had to give way
        // (lww won/lost, server rejected); concurrent counter increments and
        // set changes merge and are counted apart as "merged".
        var writes: Int64 = 0, conflicts: Int64 = 0, merged: Int64 = 0
        try db.query("SELECT type, field, writes, concurrent, won, lost, merged, rejected, resolved FROM fs_hub_conflicts") { r in
            let prefix = "conflicts.\(r.text(0)).\(r.text(1))."
            for (i, name) in ["writes", "concurrent", "won", "lost", "merged", "rejected", "resolved"].enumerated() {
                stats[prefix + name] = .int(r.int(Int32(i + 2)))
            }
            let w = r.int(2), c = r.int(4) + r.int(5) + r.int(7) + r.int(8)
            stats[prefix + "rate"] = .double(w > 0 ? Double(c) / Double(w) : 0)
            writes += w
            conflicts += c
            merged += r.int(6)
            return true
        }
        stats["field_writes"] = .int(writes)
        stats["conflicts"] = .int(conflicts)
        stats["merged"] = .int(merged)
        stats["conflict_rate"] = .double(writes > 0 ? Double(conflicts) / Double(writes) : 0)
        return .object(stats)
    }
}
