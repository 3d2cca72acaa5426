// The hub (docs/ARCHITECTURE.md#handle): a pure request -> response function over its own
// SQLite file. It deduplicates, merges per field with the same rules devices
// use, numbers changes, keeps the audit trail and answers pulls.

import Glibc

package final class Hub {
    let storage: HubStorage
    package let schema: Schema
    /// Wall clock in ms since the epoch; replaced by tests and hosts.
    package var wallClock: () -> Int64 = systemWallClock
    /// Custom-merge resolvers registered by the host, by the schema's resolver name.
    package var resolvers: [String: (JSON) -> Result<JSON, FieldSyncError>] = [:]
    /// Entry stamps further ahead of the hub's clock than this are refused
    /// ("clock_skew"): the `max_clock_skew_ms` hub option.
    package let maxClockSkewMs: Int64
    private var seq: Int64
    /// Signs every response; its public half is what devices pin.
    let key: SigningKey
    /// Whether requests must be signed by an enrolled device (the `auth` hub
    /// option, on unless "off"; docs/SECURITY.md).
    package let authenticates: Bool
    /// Which copy of the hub's history this file is: a copy fs_hub_backup
    /// writes is one generation on, so a hub restored from it tells its
    /// devices so (HubRestore.swift).
    /// (A PostgreSQL hub finds it went back to another copy by itself:
    /// HubStorage.checkIdentity.)
    private(set) var generation: Int64

    /// How many bytes of record states one response carries before the hub
    /// stops adding more (`more: true`; docs/PROTOCOL.md): a quarter of
    /// FS_MAX_MESSAGE_BYTES, so the record that crosses it, one pulled
    /// change past it and the rest of the response still fit.
    package static let responseBudgetBytes = 16 * 1024 * 1024

    package convenience init(path: String?, schemaJSON: String, optionsJSON: String?) throws(FieldSyncError) {
        let options = try optionsJSON.map { (text) throws(FieldSyncError) -> JSON in try JSON.parse(text, what: "options") } ?? .null
        try self.init(path: path, schema: Schema(json: schemaJSON), options: options)
    }

    /// `path` is the SQLite file; a PostgreSQL hub (`"storage": "postgres"`)
    /// takes none and opens its `"dsn"`.
    package init(path: String?, schema: Schema, options: JSON) throws(FieldSyncError) {
        guard let opts = options.isNull ? [:] : options.object else { throw .arg("options must be a JSON object, got \(options.kind)") }
        try checkKeys(opts, allowed: ["durability", "busy_timeout_ms", "max_clock_skew_ms", "auth", "storage", "dsn"],
                      in: "hub options", code: FieldSyncError.arg)
        let maxClockSkewMs = try HybridClock.skewOption(opts)
        let authenticates = try authOption(opts, in: "hub options")
        let (db, path) = try Hub.openDatabase(path: path, options: opts)
        let storage = try HubStorage(db: db, schema: schema)
        try db.transaction { () throws(FieldSyncError) in
            try storage.lockOpen()
            if try !storage.exists() {
                if try storage.holdsTables() {
                    throw .corrupt("\(path) holds tables but is not a fieldsync hub (no fs_meta)")
                }
                try storage.create(schema: schema)
                _ = try storage.checkIdentity(at: HybridClock.clampWall(systemWallClock()))
                return
            }
            guard try storage.meta("role")?.string == "hub", let stored = try storage.meta("schema")?.string,
                  let version = try storage.meta("schema_version")?.int else {
                throw .corrupt("\(path) is not a fieldsync hub database (a device store, or damaged)")
            }
            try storage.upgrade()
            if schema.version < version { throw .schema("the hub holds schema version \(version); version \(schema.version) is older (no downgrade)") }
            _ = try storage.checkIdentity(at: HybridClock.clampWall(systemWallClock()))
            if schema.version > version {
                try storage.migrate(from: Schema.stored(stored), to: schema)
                return
            }
            if schema.canonical != stored { throw .schema("the schema differs from the one stored with the same version \(version) (\(Schema.describeChanges(from: stored, to: schema))); give it a new version") }
        }
        self.storage = storage
        self.schema = schema
        self.maxClockSkewMs = maxClockSkewMs
        self.seq = try storage.meta("seq")?.int ?? 0
        self.authenticates = authenticates
        self.generation = try storage.meta("generation")?.int ?? 1
        self.key = try db.transaction { () throws(FieldSyncError) -> SigningKey in
            try storage.lockOpen()
            let key = try storage.signingKey()
            // Said at every open, where an operator looks (fs_hub_devices, the
            // refusal log): a hub any client can write to must not go unnoticed.
            if !authenticates {
                try storage.logRefusalRow(device: "", code: "auth_off", message: "the hub was opened with \"auth\": \"off\": requests are not authenticated",
                                          at: HybridClock.clampWall(systemWallClock()))
            }
            return key
        }
    }

    package func close() { storage.db.close() }

    /// The hub's database from its path and options: a SQLite file, or the
    /// PostgreSQL database `"dsn"` names. Returns it with how errors name it.
    private static func openDatabase(path: String?, options opts: JSONObject) throws(FieldSyncError) -> (any SQLDatabase, String) {
        let storage = opts["storage"]
        if storage == nil || storage?.string == "sqlite" {
            guard let path else { throw .arg("path is NULL (a SQLite hub needs its file; a PostgreSQL hub takes \"storage\": \"postgres\")") }
            if opts["dsn"] != nil { throw .arg("options: \"dsn\" needs \"storage\": \"postgres\"") }
            return (try Connection.openDatabase(path: path, options: opts), path)
        }
        guard storage?.string == "postgres" else { throw .arg("options: \"storage\" must be \"sqlite\" or \"postgres\"") }
        if let path, !path.isEmpty { throw .arg("a PostgreSQL hub takes no path (pass NULL): its database is options \"dsn\"") }
        if opts["durability"] != nil { throw .arg("options: \"durability\" is for a SQLite hub; a PostgreSQL hub's durability is its server's") }
        var lockTimeout: Int64 = 5000
        try integerOption(opts, "busy_timeout_ms", 0...Int64(Int32.max), into: &lockTimeout, "about 24.8 days")
        guard let dsn = opts["dsn"]?.string, !dsn.isEmpty else {
            throw .arg("options: \"storage\": \"postgres\" needs \"dsn\", a libpq connection string")
        }
        if dsn.utf8.count > 4096 { throw .tooBig("options: \"dsn\" is \(dsn.utf8.count) bytes; the limit is 4096") }
        return (try PGConnection(dsn: dsn, lockTimeoutMs: lockTimeout), "the PostgreSQL database")
    }

    /// The reason of an entry held back from a device ahead of this hub.
    static let restoredReason = "hub_restored"

    // MARK: handle

    /// Handles a decoded request. `principal` is who sent it when the hub
    /// authenticated it (Authentication.swift): its enrolled scope bounds
    /// what it may write, fetch and pull, whatever the request asks.
    package func handle(_ json: JSON) throws(FieldSyncError) -> JSON { try handle(json, principal: nil) }

    func handle(_ json: JSON, principal: Principal?) throws(FieldSyncError) -> JSON {
        let request = try Wire.Request(json)
        guard let pg = storage.db as? PGConnection else { return try handle(request, principal: principal) }
        // Processes sharing a PostgreSQL hub: a request another one got in
        // the way of was rolled back whole; it is handled again, up to a point.
        var attempt = 0
        while true {
            do {
                if pg.reconnected {
                    pg.reconnected = false
                    generation = try pg.transaction { () throws(FieldSyncError) -> Int64 in
                        try storage.checkIdentity(at: HybridClock.clampWall(wallClock()))
                    }
                }
                return try handle(request, principal: principal)
            } catch .busy(let message) {
                guard pg.lastErrorRetryable else { throw .busy(message) }
                attempt += 1
                if attempt >= Hub.attempts { throw .busy("\(message) (tried \(attempt) times)") }
                usleep(UInt32(1000 << min(attempt, 6)))
            }
        }
    }
    /// The schema version another handle migrated the hub to, once seen.
    private var movedTo: Int64?

    /// How often a PostgreSQL hub handles a request that met another again.
    static let attempts = 8

    private func handle(_ request: Wire.Request, principal: Principal?) throws(FieldSyncError) -> JSON {
        let enrolled = principal?.enrollment
        let device = request.device, batch = request.batch, clientVersion = request.schemaVersion
        let entries = request.entries, cursor = request.cursor, limit = request.limit
        let scope = try schema.checkedScope(request.scope, clientVersion: clientVersion, in: "request")
        // A host clock may return anything; every time the hub stores or
        // compares is brought into the range stamps can hold.
        let now = HybridClock.clampWall(wallClock())

        if request.proto > Wire.version {
            return Wire.Response.error("protocol_unsupported", "this hub speaks protocol \(Wire.version); the request uses \(request.proto)",
                                       proto: Wire.version, device: device, batch: batch, serverTime: now).json
        }
        // A device gets its answer in the protocol it asked in, which it can read.
        if clientVersion < schema.minClientVersion {
            return Wire.Response.error("upgrade_required", "schema version \(clientVersion) is below the minimum \(schema.minClientVersion)",
                                       proto: request.proto, device: device, batch: batch, serverTime: now).json
        }
        // Keys are checked before anything is applied: a request carrying
        // another device's entries is refused whole.
        for e in entries where e.key != Outbox.key(device: device, seq: e.seq) {
            throw .arg("request: every entry needs \"key\" = \"<device_id>-<seq>\" of the sending device")
        }
        // An audit row names the sender's own entries only: a device cannot
        // put its actions on another device's record of work.
        for row in request.audit {
            for key in row.outboxKeys where Outbox.seq(ofKey: key, device: device) == nil {
                throw .arg("request: audit row \(row.auditId) names outbox key '\(key)', not one of device '\(device)'")
            }
        }

        var committed = false
        defer { storage.endRequest(committed: committed) }
        let response = try storage.db.transaction { () throws(FieldSyncError) -> JSON in
            // Another hub handle on this file may have moved the change log on.
            // A request that writes waits here for those writing before it (PostgreSQL).
            if try storage.beginRequest(locking: !entries.isEmpty || !request.audit.isEmpty) {
                self.seq = try storage.meta("seq")?.int ?? 0
                // Another handle (a worker restarted first) migrated the file:
                // this one would merge with the old schema's rules over the
                // new schema's records. Refused before anything is read.
                if let stored = try storage.meta("schema_version")?.int, stored != schema.version { movedTo = stored }
            }
            // For good: the next request would not see the file change again.
            if let movedTo {
                throw .schema("another handle moved this hub to schema version \(movedTo); this handle has version \(schema.version): close it and open the hub with the newer schema")
            }
            var seq = self.seq
            var response = Wire.Response(proto: request.proto, device: device, batch: batch, serverTime: now)
            var held: Set<ExactString> = []
            var own: [ExactString: OwnRecord] = [:]
            var decisions = try storage.decisions(device: device, seqs: entries.map(\.seq))
            if let principal { try storage.seen(device, instance: principal.credentials.instance, at: now) }
            // A device ahead of this hub (restored from an earlier copy) gets
            // its new work back undecided, audit rows too: applied now, it
            // would land before the acknowledged work the device sends again
            // once it learns of the restore (HubRestore.swift).
            var behind = false
            if request.proto > Wire.full && request.acked > 0 { behind = try storage.decision(device: device, seq: request.acked) == nil }
            // Record states travel in rejections, fetched records and pulled
            // changes; together they stop at the budget (docs/PROTOCOL.md).
            var budget = Hub.responseBudgetBytes
            for e in entries {
                if behind {
                    var result = Wire.Result(key: e.key, status: "retry")
                    result.reason = Hub.restoredReason
                    response.results.append(result)
                    continue
                }
                let (result, applied) = try apply(entry: e, device: device, enrolled: enrolled, clientVersion: clientVersion, seq: &seq,
                                                  held: &held, own: &own, decisions: &decisions, budget: &budget, now: now)
                // A record with an entry not applied now (duplicate, retry,
                // rejected) is sent back whole, as before.
                if !applied {
                    own[ExactString(e.type, e.id), default: OwnRecord(type: e.type, id: e.id, prior: 0, seq: 0, eligible: false)].eligible = false
                }
                response.results.append(result)
            }
            // Resends answered from the ledger: one counter write a request.
            var duplicates: Int64 = 0
            for r in response.results where r.status == "duplicate" { duplicates += 1 }
            if duplicates > 0 { try storage.increment("entries_duplicate", by: duplicates) }
            let owned = own.values.filter(\.eligible).sorted { $0.seq < $1.seq }
            let ownKeys = Set(owned.map { ExactString($0.type, $0.id) })
            try storage.flush()
            let audit = try storage.storeAudit(behind ? [] : request.audit, device: device, receivedAt: now)
            if !behind, let principal, let head = principal.credentials.head {
                try storage.storeHead(head, device: device, publicKey: principal.enrollment.publicKey, at: now)
            }
            if seq != self.seq { try storage.setSequence(seq) }

            response.auditAcks = audit.acks.map { ($0.id, $0.at) }
            response.auditRefused = audit.refused.map { ($0, "audit_id_reused") }
            // To every device: a device whose hub was restored from an earlier
            // copy learns what the hub still holds of its work (HubRestore.swift).
            // Only an authenticated one renumbers from it: then reused seqs can
            // only come from a copy of its own store (a hub without authentication
            // cannot tell a copy from a second device given the same id).
            if request.proto > Wire.full {
                response.holds = try storage.holds(device: device)
                response.hub = Wire.Response.HubInfo(generation: generation, seq: seq, authenticated: principal != nil)
            }
            if let recovery = request.recovery { try storage.logRecovery(recovery, device: device, at: now) }
            // An enrolled store whose seqs meet other content is a copy
            // restored from an older file (the instance check keeps others
            // out): it recovers from `holds`; the operator is told.
            if principal != nil, !audit.refused.isEmpty || response.results.contains(where: { $0.reason == "key_reused" }) {
                try storage.increment("devices_restored")
                try storage.logRefusalRow(device: device, code: "restored_store",
                                          message: "a copy of the store restored from an older file reused seqs; it continues above seq \(response.holds?.seq ?? 0)", at: now)
            }
            response.own = owned.map { Wire.Own(type: $0.type, id: $0.id, seq: $0.seq, prior: $0.prior) }
            if !request.fetch.isEmpty {
                var found: [Wire.Record] = [], missing: [Wire.Ref] = []
                for ref in request.fetch {
                    if budget <= 0 && !found.isEmpty {
                        response.deferred.append(ref)
                    } else if let (state, recordSeq) = try storage.record(type: ref.type, id: ref.id),
                              enrolled?.sees(ref.type, state) ?? true {
                        // A record outside the device's enrolled scope is
                        // answered as missing: its existence is not told either.
                        let shown = schema.downcast(state, type: ref.type, to: clientVersion)
                        budget -= shown.text(tags: false).count
                        found.append(Wire.Record(type: ref.type, id: ref.id, seq: recordSeq, state: shown))
                    } else {
                        missing.append(ref)
                    }
                }
                response.fetched = found
                response.missing = missing
            }
            if request.pull {
                // Records answered as "own" are not sent back: the device
                // already holds exactly their state.
                let page = try storage.changes(after: cursor, limit: limit, budget: budget) { type, id in ownKeys.contains(ExactString(type, id)) }
                // An old client gets records in the shape its schema version knows.
                response.changes = page.changes.filter { inScope($0.type, $0.state, scope) && enrolled?.sees($0.type, $0.state) ?? true }.map { change in
                    Wire.Record(type: change.type, id: change.id, seq: change.seq,
                                state: schema.downcast(change.state, type: change.type, to: clientVersion))
                }
                response.cursor = page.last ?? cursor
                response.more = page.count == limit || page.full
            }
            self.seq = seq
            return response.json
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
    private func apply(entry e: Wire.Entry, device: String, enrolled: Enrollment?, clientVersion: Int64, seq: inout Int64, held: inout Set<ExactString>,
                       own: inout [ExactString: OwnRecord], decisions: inout HubStorage.Decisions,
                       budget: inout Int, now: Int64) throws(FieldSyncError) -> (Wire.Result, Bool) {
        let key = e.key, entrySeq = e.seq
        let digest = try e.digest()
        if let done = try decisions.find(entrySeq, in: storage) {
            // The key was decided for other content (a store restored from an
            // old backup, two devices given one device_id): answering
            // "duplicate" would make the device drop an action never applied.
            if let stored = done.digest, stored != digest {
                try storage.countKeyReused()
                var result = Wire.Result(key: key, status: "rejected")
                result.reason = "key_reused"
                result.detail = .object(["message": .string("the hub decided \(key) for other content (\(done.status)); this entry is not applied")])
                return (result, false)
            }
            var result = Wire.Result(key: key, status: "duplicate")
            result.outcome = done.status
            if let reason = done.reason {
                if done.status == "applied" {
                    let stored: JSON
                    do {
                        stored = try JSON.parse(reason, what: "stored resolutions", depth: Limits.maxMessageDepth)
                    } catch {
                        throw .corrupt("fs_hub_applied.reason of \(device)/\(entrySeq) cannot be read: \(error.message)")
                    }
                    guard let resolutions = stored.object else {
                        throw .corrupt("fs_hub_applied.reason of \(device)/\(entrySeq) is \(stored.kind), not an object")
                    }
                    result.resolutions = resolutions
                } else {
                    result.reason = reason
                }
            }
            result.serverSeq = done.serverSeq
            return (result, false)
        }
        let type = e.type, id = e.id
        let record = ExactString(type, id)
        func retry(_ reason: String) -> (Wire.Result, Bool) {
            held.insert(record)
            var result = Wire.Result(key: key, status: "retry")
            result.reason = reason
            return (result, false)
        }
        // An entry whose predecessor on the same record was not applied waits
        // for it: one record's changes apply in the order they were made.
        if held.contains(record) { return retry("an earlier change of \(type)/\(id) is still to be applied") }
        if let v = e.schemaVersion, v > schema.version {
            return retry("the hub runs schema version \(schema.version); this entry needs \(v)")
        }
        func reject(_ reason: String, detail: JSON? = nil, state: (RecordState, Int64)? = nil) throws(FieldSyncError) -> (Wire.Result, Bool) {
            try decisions.record(seq: entrySeq, status: "rejected", reason: reason, serverSeq: nil, digest: digest, at: now, in: storage)
            var result = Wire.Result(key: key, status: "rejected")
            result.reason = reason
            result.detail = detail
            result.state = state?.0
            result.recordSeq = state?.1
            return (result, false)
        }

        // An entry queued under an older schema is upcast to today's field
        // names; a write the chain cannot map is refused, and only that entry.
        var ops = e.ops
        if let version = e.schemaVersion, version < schema.version {
            switch schema.upcast(Change(json: ops), type: type, from: version) {
            case .success(let change): ops = change.json
            case .failure(let refusal): return try reject(refusal.reason, detail: .object(["message": .string(refusal.message)]))
            }
        }
        // The hub trusts nothing the device says: the change is checked against
        // the hub's schema by the rules a local action is checked by.
        let change: Change
        let spec: TypeSpec
        do throws(FieldSyncError) {
            spec = try schema.type(type)
            if id.isEmpty { throw .arg("entry: \"id\" must be a non-empty string") }
            change = try Change(checkingOps: ops.object ?? [:], spec: spec)
        } catch {
            return try reject("invalid: \(error.message)")
        }
        guard let hlc = e.hlc else { return try reject("invalid: entry has no \"hlc\" stamp") }
        // A stamp far ahead of the hub's clock would win every later write
        // of the field, for good: it is refused, and only this entry.
        guard HybridClock.isPlausible(hlc, wallMs: now, maxSkewMs: maxClockSkewMs) else {
            return try reject("clock_skew", detail: .object([
                "hlc": .int(hlc), "max_clock_skew_ms": .int(maxClockSkewMs), "server_time": .int(now),
                "message": .string("the stamp is not between 0 and max_clock_skew_ms (\(maxClockSkewMs) ms) ahead of the hub's clock"),
            ]))
        }

        let existing = try storage.record(type: type, id: id)
        let (current, recordSeq) = existing ?? (RecordState(absent: ()), 0)
        // The enrolled scope bounds writes: a device writes only records it
        // may see, and cannot move one out of its scope (docs/SECURITY.md).
        func outOfScope(_ why: String) throws(FieldSyncError) -> (Wire.Result, Bool) {
            try storage.logRefusalRow(device: device, code: "out_of_scope", message: "\(key): \(why)", at: now)
            return try reject("out_of_scope", detail: .object(["message": .string(why)]))
        }
        if let enrolled {
            if !enrolled.write { return try outOfScope("device '\(device)' is enrolled read-only") }
            if existing != nil && !enrolled.sees(type, current) || enrolled.scope.map({ $0[type] == nil }) == true {
                return try outOfScope("\(type)/\(id) is outside the scope device '\(device)' is enrolled for")
            }
        }
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
        if let enrolled, report.rejection == nil, !enrolled.sees(type, state) {
            return try outOfScope("the change would move \(type)/\(id) out of the scope device '\(device)' is enrolled for")
        }
        storage.count(report, type: type, spec: spec)
        if let refusal = report.rejection {
            // Past the response's budget the state stays behind: the
            // device's next pull brings it.
            guard budget > 0, enrolled?.sees(type, current) ?? true else { return try reject(refusal.reason, detail: refusal.detail) }
            let state = schema.downcast(current, type: type, to: clientVersion)
            budget -= state.text(tags: false).count
            return try reject(refusal.reason, detail: refusal.detail, state: (state, recordSeq))
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
        try decisions.record(seq: entrySeq, status: "applied", reason: detail, serverSeq: seq, digest: digest, at: now, in: storage)
        var result = Wire.Result(key: key, status: "applied")
        result.serverSeq = seq
        result.resolutions = resolutions
        return (result, true)
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
        // Other processes move a PostgreSQL hub's sequence on too.
        let seq = db.dialect == .postgres ? try storage.meta("seq")?.int ?? seq : seq
        var stats: JSONObject = ["schema_version": .int(schema.version), "seq": .int(seq),
                                 "storage": .string(db.dialect == .postgres ? "postgres" : "sqlite")]
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
        stats["entries_clock_skew"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_applied WHERE status = 'rejected' AND reason = 'clock_skew'") ?? 0)
        stats["entries_key_reused"] = .int(try storage.meta("entries_key_reused")?.int ?? 0)
        stats["entries_out_of_scope"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_applied WHERE status = 'rejected' AND reason = 'out_of_scope'") ?? 0)
        stats["entries_duplicate"] = .int(try storage.meta("entries_duplicate")?.int ?? 0)
        // Every rejection by its reason's code, the words before a ':'
        // ("invalid: <why>" is "invalid"), so the keys stay few whatever the
        // messages say: "entries_rejected.<code>". The keys above stay for
        // hosts that read them.
        let code = db.dialect == .postgres
            ? "CASE WHEN strpos(coalesce(reason, 'unknown'), ':') > 0 THEN split_part(reason, ':', 1) ELSE coalesce(reason, 'unknown') END"
            : "CASE WHEN instr(coalesce(reason, 'unknown'), ':') > 0 THEN substr(reason, 1, instr(reason, ':') - 1) ELSE coalesce(reason, 'unknown') END"
        try db.select("SELECT \(code), count(*) FROM fs_hub_applied WHERE status = 'rejected' GROUP BY 1") { r in
            stats["entries_rejected." + r.text(0)] = .int(r.int(1))
            return true
        }
        stats["auth"] = .string(authenticates ? "on" : "off")
        stats["public_key"] = .string(publicKey)
        stats["devices_enrolled"] = .int(try db.scalar("SELECT count(*) FROM fs_devices WHERE revoked = 0") ?? 0)
        stats["devices_revoked"] = .int(try db.scalar("SELECT count(*) FROM fs_devices WHERE revoked = 1") ?? 0)
        stats["audit_heads"] = .int(try db.scalar("SELECT count(*) FROM fs_audit_heads") ?? 0)
        var refused: Int64 = 0
        for code in Hub.refusalCodes {
            let n = try storage.meta("auth_refused_\(code)")?.int ?? 0
            stats["auth_refused_\(code)"] = .int(n)
            refused += n
        }
        stats["auth_refused"] = .int(refused)
        stats["devices_restored"] = .int(try storage.meta("devices_restored")?.int ?? 0)
        stats["generation"] = .int(generation)
        stats["devices_recovered"] = .int(try storage.meta("devices_recovered")?.int ?? 0)
        stats["devices_restore_incomplete"] = .int(try storage.meta("devices_restore_incomplete")?.int ?? 0)
        stats["audit_reused"] = .int(try storage.meta("audit_reused")?.int ?? 0)
        stats["audit_rows"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit") ?? 0)
        stats["audit_hash_failures"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit WHERE hash_ok = 0") ?? 0)
        stats["audit_chain_breaks"] = .int(try db.scalar("SELECT count(*) FROM fs_hub_audit WHERE link_ok = 0") ?? 0)
        // audit_id <= Wire.maxSeq (2^53): the sum cannot overflow below 1024 devices at that bound; total() never does.
        let sum = db.dialect == .postgres ? "coalesce(sum(m - n), 0)::bigint" : "CAST(total(m - n) AS INTEGER)"
        stats["audit_gaps"] = .int(try db.scalar("SELECT \(sum) FROM (SELECT max(audit_id) AS m, count(*) AS n FROM fs_hub_audit GROUP BY device) AS per_device") ?? 0)
        // A conflict is a concurrent write where one value had to give way
        // (lww won/lost, server rejected); concurrent counter increments and
        // set changes merge and are counted apart as "merged".
        var writes: Int64 = 0, conflicts: Int64 = 0, merged: Int64 = 0
        try db.select("SELECT type, field, writes, concurrent, won, lost, merged, rejected, resolved FROM fs_hub_conflicts") { r in
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
