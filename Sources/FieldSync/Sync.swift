// The device's sync steps (docs/ARCHITECTURE.md#prepare): sans-I/O. prepare says what to send
// (or how long to wait), receive applies what came back, fail and
// connectivity steer the backoff. The host moves the bytes.

/// Sync settings (store options) and progress. Progress that must survive a
/// restart lives in fs_meta; transport backoff deliberately does not: a
/// restarted app should try at once.
struct SyncState {
    var batchSize: Int64 = 500
    var batchBytes: Int64 = 4 * 1024 * 1024
    var pullLimit: Int64 = 1000
    var backoffBaseMs: Int64 = 500
    var backoffCapMs: Int64 = 60_000
    var maxAttempts: Int64 = 8
    var pullIntervalMs: Int64 = 60_000
    var scope: JSONObject = [:]
    /// The protocol requests are written in: 1 for a hub older than this library.
    var proto: Int64 = Wire.version

    var cursor: Int64 = 0
    var batches: Int64 = 0
    var auditAckedThrough: Int64 = 0
    var pullDue = true
    var upgradeRequired: String? = nil
    /// The hub's last refusal of this device (docs/SECURITY.md), until a
    /// request is answered again.
    var authRefused: String? = nil

    var online = true
    var failures: Int64 = 0
    var retryAt: Int64 = 0
    var lastPullAt: Int64 = 0
    var lastSyncAt: Int64 = 0
    var lastFailure: String? = nil

    /// The hub's generation as last seen, and what recovering from a
    /// restored hub left behind (HubRestore.swift); from fs_meta.
    var hubGeneration: Int64? = nil
    var hubRecoveryBatch: Int64 = 0
    var ackedEvictedThrough: Int64 = 0
    var hubLostThrough: Int64 = 0
    /// Sent with every request until one is answered (Wire.Request.Recovery).
    var recoveryReport: String? = nil

    static let optionKeys: Set<String> = ["batch_size", "batch_bytes", "pull_limit", "backoff_base_ms", "backoff_cap_ms",
                                          "max_attempts", "pull_interval_ms", "scope", "protocol"]

    /// The longest duration option (10 years, as the clock-skew bound): added
    /// to a clamped wall time (below 2^47) it stays far from overflow.
    static let maxDurationMs = HybridClock.maxSkewLimitMs
    /// The largest request budget: with one largest action on top (about
    /// 10 MiB at worst, docs/ABI.md "Store options") a request stays far below
    /// FS_MAX_MESSAGE_BYTES.
    static let maxBatchBytes: Int64 = 16 * 1024 * 1024

    mutating func configure(_ opts: JSONObject) throws(FieldSyncError) {
        try integerOption(opts, "batch_size", 1...100_000, into: &batchSize)
        try integerOption(opts, "batch_bytes", 1...SyncState.maxBatchBytes, into: &batchBytes)
        try integerOption(opts, "pull_limit", 1...100_000, into: &pullLimit)
        try integerOption(opts, "backoff_base_ms", 1...SyncState.maxDurationMs, into: &backoffBaseMs, "10 years")
        try integerOption(opts, "backoff_cap_ms", 1...SyncState.maxDurationMs, into: &backoffCapMs, "10 years")
        try integerOption(opts, "max_attempts", 1...1_000_000, into: &maxAttempts)
        try integerOption(opts, "pull_interval_ms", 0...SyncState.maxDurationMs, into: &pullIntervalMs,
                          "10 years; 0 pulls only when asked")
        try integerOption(opts, "protocol", Wire.full...Wire.version, into: &proto, "1 while the hub is older than this library")
        if backoffCapMs < backoffBaseMs { throw .arg("options: \"backoff_cap_ms\" must be >= \"backoff_base_ms\"") }
        if let s = opts["scope"] {
            guard let scope = s.object else { throw .arg("options: \"scope\" must map types to field filters") }
            self.scope = scope
        }
    }

    /// Full jitter: a uniform wait in [1, min(cap, base * 2^attempt)] ms (never
    /// zero, so a retry is not resent within the same exchange loop).
    func backoff(attempt: Int64, random: inout some RandomNumberGenerator) -> Int64 {
        let exponent = Swift.min(Swift.max(attempt - 1, 0), 40)
        let (raw, overflow) = backoffBaseMs.multipliedReportingOverflow(by: Int64(1) << exponent)
        let ceiling = overflow ? backoffCapMs : Swift.min(backoffCapMs, raw)
        return Int64.random(in: 1...max(1, ceiling), using: &random)
    }
}

/// Reads an integer option that must lie in `range`: every option is bounded
/// where it is decoded, so the arithmetic that uses it later cannot overflow.
/// `note` explains the bound or how to mean "never" / "forever".
func integerOption(_ opts: JSONObject, _ key: String, _ range: ClosedRange<Int64>, into value: inout Int64,
                   _ note: String? = nil) throws(FieldSyncError) {
    guard let v = opts[key] else { return }
    guard let n = v.int, range.contains(n) else {
        throw .arg("options: \"\(key)\" must be an integer from \(range.lowerBound) to \(range.upperBound)"
                   + (note.map { " (\($0))" } ?? "") + ", got \(v.text)")
    }
    value = n
}

extension Store {

    /// At open: the progress as the file holds it (read by `write`), then
    /// what a new scope and an unanswered batch change in it.
    func loadSyncProgress() throws(FieldSyncError) {
        let scopeText = JSON.object(sync.scope).text
        try write { () throws(FieldSyncError) in
            // A new scope may take in records the old one skipped: pull from the start.
            if let stored = try Store.meta("scope", db: db)?.string, stored != scopeText {
                sync.cursor = 0
            }
            try setMeta("scope", .string(scopeText))
            try setMeta("cursor", .int(sync.cursor))
            // A batch that was in flight when the app stopped has an unknown
            // fate; the hub deduplicates, so it is simply sent again.
            try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL WHERE state = 'inflight'")
        }
    }

    func setMeta(_ key: String, _ value: JSON) throws(FieldSyncError) {
        try db.run("INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)", [.text(key), value.sqlLiteral])
    }

    // MARK: prepare

    static let dueEntries = PreparedSQL("""
        SELECT o.seq, o.type, o.id, o.hlc, o.schema_version, o.ops, o.base, o.cursor, o.state, o.next_attempt_at,
               o.base_values, a.actor, max(s.version, 0),
               CASE WHEN a.server_received_at IS NULL THEN length(CAST(a.input AS BLOB)) ELSE 0 END
        FROM fs_outbox o LEFT JOIN fs_audit a ON a.audit_id = o.seq
        LEFT JOIN fs_shadow s ON s.type = o.type AND s.id = o.id
        WHERE o.state IN ('pending', 'stuck') ORDER BY o.seq
        """)

    /// The next request to send, or nil and how long to wait before asking again.
    package func prepare() throws(FieldSyncError) -> (request: JSON?, waitMs: Int64) {
        let (text, wait) = try prepareText()
        guard let text else { return (nil, wait) }
        return (try Store.parsed(request: text), wait)
    }

    private static func parsed(request text: [UInt8]) throws(FieldSyncError) -> JSON {
        let parsed = text.withUnsafeBytes { buf in
            Result { () throws(FieldSyncError) -> JSON in
                guard let base = buf.baseAddress else { throw .internal("empty request") }
                return try JSON.parse(bytes: base, count: buf.count, what: "request", limit: Int.max, depth: Limits.maxMessageDepth)
            }
        }
        return try parsed.get()
    }

    /// The next request as JSON text (what fs_sync_prepare hands out). It is
    /// written straight from the outbox and audit rows: the stored ops, base
    /// and input are canonical JSON the engine wrote, and go in as they are
    /// instead of being parsed into values and written out again.
    package func prepareText() throws(FieldSyncError) -> (request: [UInt8]?, waitMs: Int64) {
        if sync.upgradeRequired != nil { return (nil, -1) }
        let now = self.now()
        if !sync.online { return (nil, sync.backoffCapMs) }
        if sync.retryAt > now { return (nil, sync.retryAt - now) }

        let (request, wait, number) = try makingRoom { () throws(FieldSyncError) in try write {
            () throws(FieldSyncError) -> ([UInt8]?, Int64, Int64) in
            if sync.upgradeRequired != nil { return (nil, -1, 0) }   // learnt by another handle
            // An unanswered earlier batch is superseded: its entries go again.
            try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL WHERE state = 'inflight'")
            var entries = ByteWriter(capacity: 64 * 1024)
            var selected: [Int64] = []
            var blocked: Set<ExactString> = []
            var nextDue = Int64.max
            // Requests are sized by bytes as well as count: entries with the
            // audit rows that travel with them stop once past batch_bytes
            // (always one, so an action apply accepted always goes, alone if
            // it must; docs/ABI.md "Store options").
            var bytes: Int64 = 0
            // Protocol 2: an audit row travelling with its entry leaves out
            // what the entry says (Wire.writeAudit).
            let compact = sync.proto > Wire.full
            var travelling: [Int64: Wire.EntryOfRow] = [:]
            try db.query(Store.dueEntries) { r in
                let type = r.text(1), id = r.text(2)
                let record = ExactString(type, id)
                if blocked.contains(record) { return true }
                let state = r.text(8), due = r.int(9)
                // One record's entries go in order: one not yet due holds back
                // the later ones of its record, and nothing else.
                if state == OutboxState.stuck.rawValue || due > now {
                    blocked.insert(record)
                    if state != OutboxState.stuck.rawValue { nextDue = min(nextDue, due) }
                    return true
                }
                let seq = r.int(0), key = Outbox.key(device: deviceId, seq: seq), actor = r.optionalText(11) ?? ""
                if !selected.isEmpty { entries.append(UInt8(ascii: ",")) }
                let before = entries.count
                Wire.Entry.write(key: key, seq: seq, type: type, id: id, actor: actor, hlc: r.int(3), schemaVersion: r.int(4),
                                 cursor: r.int(7), shadowSeq: r.optionalInt(12) ?? 0,
                                 ops: .column(r, 5, opening: UInt8(ascii: "{"), orElse: "{}"),
                                 base: .column(r, 6, opening: UInt8(ascii: "{"), orElse: "{}"),
                                 baseValues: .column(r, 10, opening: UInt8(ascii: "{"), orElse: "{}"), to: &entries)
                selected.append(seq)
                if compact { travelling[seq] = Wire.entryOfRow(key: key, type: type, id: id, hlc: r.int(3), actor: actor) }
                // Safe: an entry and its audit row are a few MiB at most.
                bytes += Int64(entries.count - before) + r.int(13) + Store.auditRowOverhead
                return Int64(selected.count) < sync.batchSize && bytes < sync.batchBytes
            }
            let pullDue = sync.pullDue || (sync.pullIntervalMs > 0 && sync.lastPullAt + sync.pullIntervalMs <= now)
            if selected.isEmpty && !pullDue {
                var wait = nextDue == Int64.max ? -1 : nextDue - now
                if sync.pullIntervalMs > 0 {
                    let untilPull = sync.lastPullAt + sync.pullIntervalMs - now
                    wait = wait < 0 ? untilPull : min(wait, untilPull)
                }
                return (nil, wait, 0)
            }

            guard sync.batches < Int64.max else { throw .corrupt("the store's batch counter is at its greatest value") }
            let number = sync.batches + 1
            let batch = Wire.batchId(device: deviceId, number: number)
            try setMeta("batches", .int(number))
            for run in consecutiveRuns(selected) {
                try db.run(Store.markInflight, [.text(batch), .int(run.lowerBound), .int(run.upperBound)])
            }
            // Audit rows travel with their entries; rows not yet acknowledged
            // (of discarded or stuck entries too) follow in order.
            var wanted = selected
            if bytes < sync.batchBytes {
                try db.query(Store.oldestUnacked, [.int(sync.auditAckedThrough), .int(sync.batchSize)]) { r in
                    wanted.append(r.int(0))
                    bytes += r.int(1) + Store.auditRowOverhead
                    return bytes < sync.batchBytes
                }
            }
            var audit = ByteWriter(capacity: 64 * 1024)
            var first = true
            var previousHash: String?
            var head: (auditId: Int64, hash: String)?
            for run in consecutiveRuns(wanted) {
                try db.query(Store.unackedAudit, [.int(run.lowerBound), .int(run.upperBound)]) { r in
                    if !first { audit.append(UInt8(ascii: ",")) }
                    first = false
                    let auditId = r.int(0), actor = r.text(1), type = r.text(3), id = r.text(4), hlc = r.int(7)
                    let repeats = travelling[auditId].map { entry in
                        Wire.rowRepeats(entry, actor: actor, type: type, id: id, hlc: hlc, outboxKeys: r.bytes(8))
                    } ?? false
                    let prevHash = r.text(9), hash = r.text(10)
                    let chained = compact && previousHash.map { equalUTF8($0, prevHash) } == true
                    Wire.writeAudit(auditId: auditId, actor: actor, action: r.text(2), type: type, id: id,
                                    input: .column(r, 5, opening: nil, orElse: "null"), deviceTime: r.int(6), hlc: hlc,
                                    outboxKeys: .column(r, 8, opening: UInt8(ascii: "["), orElse: "[]"),
                                    prevHash: prevHash, hash: hash, compact: repeats, chained: chained, to: &audit)
                    previousHash = hash
                    head = (auditId, hash)
                    return true
                }
            }
            var out = ByteWriter(capacity: entries.count + audit.count + 256)
            Wire.Request.write(proto: sync.proto, device: deviceId, batch: batch, schemaVersion: schema.version, cursor: sync.cursor,
                               pull: true, limit: sync.pullLimit, scope: sync.scope.isEmpty ? nil : JSON.object(sync.scope),
                               entries: entries, audit: audit, fetch: [], auth: try credentials(head: head),
                               recovery: try recoveryMember(), acked: try ackedHigh(), to: &out)
            if entries.failed || audit.failed || out.failed { throw .internal("out of memory writing a request") }
            // Signed inside the transaction: a signer that fails leaves the
            // outbox as it was.
            return (try signed(out.array, batch: number), 0, number)
        } }
        // Only once committed: a step that failed (and may be retried) changed nothing.
        if request != nil { sync.batches = number }
        return (request, wait)
    }

    /// Runs a sync step; if it failed for want of space (FS_ERR_FULL, or the
    /// I/O error a file size limit gives), reclaims the WAL's space and runs
    /// it once more. So a store that hit FS_ERR_FULL can still drain its
    /// outbox, which is what frees space. `step` changes nothing in memory
    /// unless its transaction commits, so running it again is safe.
    func makingRoom<R>(_ step: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        do {
            return try step()
        } catch {
            switch error {
            case .full(_), .io(_):
                guard db.reclaimWAL() else { throw error }
                return try step()
            default:
                throw error
            }
        }
    }

    // Rows the hub refused (it holds another row under their id) stay
    // unacknowledged and visible, but are not sent again: every resend would
    // be refused, and enough of them would fill the window of this query.
    static let oldestUnacked = PreparedSQL("""
        SELECT audit_id, length(CAST(input AS BLOB)) FROM fs_audit WHERE audit_id > ? AND server_received_at IS NULL
        AND reason IS NOT 'audit_id_reused' ORDER BY audit_id LIMIT ?
        """)
    /// An audit row's bytes besides its input, for the request budget: keys,
    /// hashes and numbers, with the short names a little escaped.
    static let auditRowOverhead: Int64 = 512
    static let unackedAudit = PreparedSQL("""
        SELECT audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, prev_hash, hash FROM fs_audit
        WHERE audit_id BETWEEN ? AND ? AND server_received_at IS NULL ORDER BY audit_id
        """)

    static let markInflight = PreparedSQL("UPDATE fs_outbox SET state = 'inflight', batch = ? WHERE seq BETWEEN ? AND ?")
    static let answeredEntries = PreparedSQL("""
        SELECT seq, type, id, attempts, ops, hlc, schema_version FROM fs_outbox
        WHERE seq BETWEEN ? AND ? AND state != 'rejected'
        """)
    static let deleteEntries = PreparedSQL("DELETE FROM fs_outbox WHERE seq BETWEEN ? AND ?")
    // The row's outcome and, when the same response acknowledges it, its
    // server_received_at: one statement instead of two.
    static let auditApplied = PreparedSQL("""
        UPDATE fs_audit SET outcome = 'applied', reason = NULL, server_received_at = coalesce(server_received_at, ?)
        WHERE audit_id BETWEEN ? AND ?
        """)
    static let auditReceived = PreparedSQL("UPDATE fs_audit SET server_received_at = ? WHERE audit_id = ? AND server_received_at IS NULL")
    static let auditRefused = PreparedSQL(
        "UPDATE fs_audit SET reason = ? WHERE audit_id = ? AND server_received_at IS NULL AND reason IS NOT ?")

    // MARK: fetch

    /// A request asking the hub for records this device does not hold
    /// (evicted, or outside its scope). The answer goes to receive() like any
    /// other; the records are cached for fetch_ttl_ms.
    package func fetchRequest(_ refs: JSON) throws(FieldSyncError) -> JSON { try Store.parsed(request: fetchRequestText(refs)) }

    /// The fetch request as fs_store_fetch_request hands it out (signed).
    package func fetchRequestText(_ refs: JSON) throws(FieldSyncError) -> [UInt8] {
        guard let list = refs.array, !list.isEmpty else { throw .arg("refs must be a non-empty array of {\"type\", \"id\"}") }
        if list.count > 1000 { throw .tooBig("at most 1000 records per fetch; got \(list.count)") }
        var wanted: [Wire.Ref] = []
        for ref in list {
            guard let o = ref.object, let type = o["type"]?.string, let id = o["id"]?.string, !id.isEmpty else {
                throw .arg("each ref must be {\"type\": ..., \"id\": ...}")
            }
            _ = try schema.type(type)
            try checkLength(id, what: "id")
            wanted.append(Wire.Ref(type: type, id: id))
        }
        let (number, text) = try write { () throws(FieldSyncError) -> (Int64, [UInt8]) in
            if sync.upgradeRequired != nil { throw .upgradeRequired("the hub requires a newer schema; reopen the store with it") }
            guard sync.batches < Int64.max else { throw .corrupt("the store's batch counter is at its greatest value") }
            let number = sync.batches + 1
            try setMeta("batches", .int(number))
            var out = ByteWriter(capacity: 256 + 64 * wanted.count)
            Wire.Request.write(proto: sync.proto, device: deviceId, batch: Wire.batchId(device: deviceId, number: number),
                               schemaVersion: schema.version, cursor: sync.cursor, pull: false, limit: nil, scope: nil,
                               entries: ByteWriter(capacity: 0), audit: ByteWriter(capacity: 0), fetch: wanted,
                               auth: try credentials(head: nil), recovery: try recoveryMember(), acked: try ackedHigh(), to: &out)
            if out.failed { throw .internal("out of memory writing a request") }
            return (number, try signed(out.array, batch: number))
        }
        sync.batches = number
        return text
    }

    // MARK: receive

    /// Applies the hub's response in one transaction; returns a summary.
    package func receive(_ response: JSON) throws(FieldSyncError) -> JSON {
        try makingRoom { () throws(FieldSyncError) in try receiveOnce(response) }
    }

    private func receiveOnce(_ response: JSON) throws(FieldSyncError) -> JSON {
        // Every member is read and range-checked here (Wire.Response),
        // before anything changes.
        var decoded = try Wire.Response(response)
        if decoded.device != deviceId { throw .arg("response is for device '\(decoded.device)', this store is '\(deviceId)'") }
        let answered = decoded.batch.flatMap { Wire.batchNumber($0, device: deviceId) }
        // Another handle on the file may have sent it.
        if let answered, answered > sync.batches { try catchUp() }
        guard let batch = decoded.batch, let answered, answered <= sync.batches else {
            throw .arg("response answers batch \(decoded.batch.map { JSON.string($0).text } ?? "null"), which this store never sent")
        }
        let now = self.now()

        if let (code, message) = decoded.error {
            try write { () throws(FieldSyncError) in
                try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL WHERE batch = ? AND state = 'inflight'", [.text(batch)])
                if code == "upgrade_required" { try setMeta("upgrade_required", .string(message)) }
            }
            if code == "upgrade_required" {
                sync.upgradeRequired = message
                throw .upgradeRequired("the hub requires a newer schema: \(message); the outbox is kept")
            }
            if Hub.refusalCodes.contains(code) {
                // Sending again at once would be refused again: back off as
                // after a transport failure, until enrollment is fixed.
                var random = SystemRandomNumberGenerator()
                sync.failures += 1
                sync.retryAt = now + sync.backoff(attempt: sync.failures, random: &random)
                sync.lastFailure = "auth: \(code): \(message)"
                sync.authRefused = code
                throw .auth("the hub refused this device (\(code)): \(message); the outbox is kept")
            }
            if code == "protocol_unsupported" && sync.proto > Wire.full {
                throw .conflict("the hub refused the request (\(code)): \(message); a hub older than this library speaks "
                                + "protocol 1: open the store with the option \"protocol\": 1 until the hub is upgraded")
            }
            throw .conflict("the hub refused the request (\(code)): \(message)")
        }

        try recoverIfRestored(&decoded)
        try recoverIfHubRestored(&decoded, answered: answered)
        let changes = decoded.changes ?? [], fetched = decoded.fetched ?? []
        var own: [ExactString: Wire.Own] = [:]
        for record in decoded.own { own[ExactString(record.type, record.id)] = record }
        var receivedAt: [Int64: Int64] = [:]
        for ack in decoded.auditAcks { receivedAt[ack.auditId] = ack.at }
        // Check every key before changing anything: a response naming another
        // device's entries is refused whole.
        var parsed: [(seq: Int64, item: Wire.Result)] = []
        for o in decoded.results {
            guard let seq = Outbox.seq(ofKey: o.key, device: deviceId) else { throw .arg("response: result for '\(o.key)', not an entry of this device") }
            guard ["applied", "duplicate", "rejected", "retry"].contains(o.status) else { throw .arg("response: unknown status '\(o.status)'") }
            parsed.append((seq, o))
        }

        var clock = self.clock
        var summary: [String: Int64] = ["applied": 0, "duplicate": 0, "rejected": 0, "retry": 0, "stuck": 0, "pulled": 0, "fetched": 0]
        var touched: [ExactString: (type: String, id: String)] = [:]
        var confirmed: [ExactString: (type: String, id: String, changes: [Confirmed])] = [:]
        var pulledRecords: Set<ExactString> = []
        for change in changes { pulledRecords.insert(ExactString(change.type, change.id)) }
        var writes: [String: Int64] = [:]
        var random = SystemRandomNumberGenerator()
        var acknowledged: Set<Int64> = []
        var evictedThrough = sync.ackedEvictedThrough
        var committed = false
        defer { shadows.end(committed: committed) }
        let newCursor: Int64 = try write { () throws(FieldSyncError) -> Int64 in
            // An answer to a batch sent before the hub was restored tells of
            // its former life: acknowledgements the restored hub never made.
            if answered < sync.hubRecoveryBatch {
                throw .arg("response answers batch \(batch), sent before the hub was found restored from an earlier copy; it is ignored")
            }
            clock = self.clock   // as caught up with the file
            _ = try shadows.begin(db)
            // The answered entries, one query per run of consecutive seqs
            // (statements per entry were most of a large batch's cost).
            var open: [Int64: (type: String, id: String, attempts: Int64, ops: String, hlc: Int64, version: Int64)] = [:]
            for run in consecutiveRuns(parsed.map(\.seq)) {
                try db.query(Store.answeredEntries, [.int(run.lowerBound), .int(run.upperBound)]) { row in
                    open[row.int(0)] = (row.text(1), row.text(2), row.int(3), row.text(4), row.int(5), row.int(6))
                    return true
                }
            }
            var applied: [Int64?: [Int64]] = [:]
            for (seq, item) in parsed {
                // Already settled by an earlier answer (acked, or rejected and
                // waiting for the host), or earlier in this one: a repeated
                // answer changes nothing.
                guard let entry = open.removeValue(forKey: seq) else { continue }
                let status = item.status
                summary[status, default: 0] += 1
                let outcome = status == "duplicate" ? (item.outcome ?? "applied") : status
                switch outcome {
                case "applied":
                    for resolution in item.resolutions.values {
                        if let name = resolution.string { writes["writes_\(name)", default: 0] += 1 }
                    }
                    applied[receivedAt[seq], default: []].append(seq)
                    if receivedAt[seq] != nil { acknowledged.insert(seq) }
                    let key = ExactString(entry.type, entry.id)
                    // The pulled state, when the response carries it, already
                    // holds this change; otherwise fold it into the confirmed state.
                    // Moving an acknowledged change from the outbox into the
                    // confirmed state leaves the view as it is: no rebase.
                    if !pulledRecords.contains(key) {
                        confirmed[key, default: (entry.type, entry.id, [])].changes.append(
                            Confirmed(ops: entry.ops, hlc: entry.hlc, schemaVersion: entry.version, serverSeq: item.serverSeq))
                    } else {
                        // The view is rebuilt on the pulled state even when
                        // that state is no newer than the one held: the held
                        // one may already hold this change (pulled while the
                        // change was pending again, after a hub restore), and
                        // the view counted it twice until now.
                        touched[key] = (entry.type, entry.id)
                    }
                case "rejected":
                    writes["writes_rejected", default: 0] += 1
                    let reason = item.reason ?? "rejected"
                    try db.run("UPDATE fs_outbox SET state = 'rejected', batch = NULL, reason = ? WHERE seq = ?", [.text(reason), .int(seq)])
                    try db.run("UPDATE fs_audit SET outcome = 'rejected', reason = ? WHERE audit_id = ?", [.text(reason), .int(seq)])
                    touched[ExactString(entry.type, entry.id)] = (entry.type, entry.id)
                    // The hub sends the record's current state with a refusal so
                    // the view returns to the server's value at once.
                    if let state = item.state, let version = item.recordSeq {
                        _ = try storeShadow(type: entry.type, id: entry.id, version: version, state: state, clock: &clock)
                    }
                default: // retry
                    let attempts = entry.attempts + 1
                    if attempts >= sync.maxAttempts {
                        summary["stuck", default: 0] += 1
                        try db.run("UPDATE fs_outbox SET state = 'stuck', batch = NULL, attempts = ?, reason = ? WHERE seq = ?",
                                   [.int(attempts), .text(item.reason ?? "retries exhausted"), .int(seq)])
                    } else {
                        let due = now + sync.backoff(attempt: attempts, random: &random)
                        try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL, attempts = ?, next_attempt_at = ?, reason = ? WHERE seq = ?",
                                   [.int(attempts), .int(due), item.reason.map(SQLValue.text) ?? .null, .int(seq)])
                    }
                }
            }
            // Acknowledged entries leave the outbox for fs_acked, kept for the
            // window in case the hub is restored from an earlier copy
            // (HubRestore.swift), and their audit rows take the hub's time,
            // one statement per run of seqs.
            let keep = hygieneSettings.ackedRetentionS > 0
            var dropped: Int64 = 0
            for (at, seqs) in applied {
                for run in consecutiveRuns(seqs) {
                    if keep {
                        try db.run(Store.keepAcked, [.int(now), .int(run.lowerBound), .int(run.upperBound)])
                    } else {
                        dropped = max(dropped, run.upperBound)
                    }
                    try db.run(Store.deleteEntries, [.int(run.lowerBound), .int(run.upperBound)])
                    try db.run(Store.auditApplied, [at.map(SQLValue.int) ?? .null, .int(run.lowerBound), .int(run.upperBound)])
                }
            }
            if dropped > sync.ackedEvictedThrough {
                try setMeta("acked_evicted_through", .int(dropped))
                evictedThrough = dropped
            }
            if keep && now >= ackedEvictedAt + Store.ackedEvictionIntervalMs { evictedThrough = try evictAcked(now: now).through }
            if let hub = decoded.hub, sync.hubGeneration == nil { try setMeta("hub_generation", .int(hub.generation)) }
            // The hub has read the report of a recovery once it answers a
            // request prepared after it: every such request carried it.
            if sync.recoveryReport != nil && answered > sync.hubRecoveryBatch {
                try db.run("DELETE FROM fs_meta WHERE key = 'hub_recovery_report'")
            }
            var rewind: Int64?
            for (key, record) in confirmed {
                var exact: Int64?
                if let mine = own[key] {
                    let held: Int64
                    if let kept = shadows[key] { held = kept.version } else {
                        held = try db.scalar(Store.shadowVersion, [.text(record.type), .text(record.id)]) ?? 0
                    }
                    // The hub counted on the state this device held when it
                    // prepared; if that changed since, pull the record again.
                    if held == mine.prior { exact = mine.seq } else { rewind = min(rewind ?? mine.prior, mine.prior) }
                }
                let folded = try confirm(record.changes, type: record.type, id: record.id, exactVersion: exact)
                if folded.contained { touched[key] = (record.type, record.id) }
                // A counter the held state cannot take the hub's increments on
                // (it is behind): the record is pulled again for the hub's value.
                if let held = folded.repull { rewind = min(rewind ?? held, held) }
            }
            // Entries the hub did not answer go back to pending untouched.
            try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL WHERE batch = ? AND state = 'inflight'", [.text(batch)])

            for change in changes {
                let type = change.type, id = change.id
                guard views[type] != nil else { continue }   // a type this schema does not have
                if try storeShadow(type: type, id: id, version: change.seq, state: change.state, clock: &clock) {
                    summary["pulled", default: 0] += 1
                    touched[ExactString(type, id)] = (type, id)
                }
            }
            for record in fetched {
                let type = record.type, id = record.id
                guard views[type] != nil else { continue }
                if try storeShadow(type: type, id: id, version: record.seq, state: record.state,
                                   clock: &clock, cacheUntil: now + hygieneSettings.fetchTTLMs) {
                    summary["fetched", default: 0] += 1
                    touched[ExactString(type, id)] = (type, id)
                }
            }
            for record in touched.values { try rebase(type: record.type, id: record.id) }

            for (id, at) in receivedAt where !acknowledged.contains(id) {
                try db.run(Store.auditReceived, [.int(at), .int(id)])
            }
            // Rows the hub holds another row under the same id for are never
            // acknowledged: marked (once) so the host sees why they stay unacked.
            for (id, reason) in decoded.auditRefused {
                try db.run(Store.auditRefused, [.text(reason), .int(id), .text(reason)])
                if db.changes > 0 { writes["audit_refused", default: 0] += 1 }
            }
            let firstUnacked = try db.scalar("SELECT min(audit_id) FROM fs_audit WHERE audit_id > ? AND server_received_at IS NULL",
                                             [.int(sync.auditAckedThrough)])
            let acked = firstUnacked.map { $0 - 1 } ?? lastSeq
            try setMeta("audit_acked_through", .int(acked))

            for (key, n) in writes where Store.writeCounters.contains(key) {
                try setMeta(key, .int((try Store.meta(key, db: db)?.int ?? 0) + n))
            }
            var cursor = max(sync.cursor, decoded.cursor ?? sync.cursor)
            if let rewind { cursor = min(cursor, rewind) }
            try setMeta("cursor", .int(cursor))
            try setMeta("hlc", .int(clock.last))
            sync.auditAckedThrough = acked
            return cursor
        }
        committed = true
        self.clock = clock
        if hygieneSettings.ackedRetentionS > 0 && now >= ackedEvictedAt + Store.ackedEvictionIntervalMs { ackedEvictedAt = now }
        sync.ackedEvictedThrough = evictedThrough
        if sync.hubGeneration == nil { sync.hubGeneration = decoded.hub?.generation }
        if answered > sync.hubRecoveryBatch { sync.recoveryReport = nil }
        sync.cursor = newCursor
        sync.pullDue = decoded.more ?? false
        sync.lastPullAt = now
        sync.lastSyncAt = now
        sync.authRefused = nil
        sync.failures = 0
        sync.retryAt = 0
        var out = JSONObject(summary, JSON.int)
        if hygieneSettings.everyActions > 0 && lastSeq - hygieneSettings.lastPassSeq >= hygieneSettings.everyActions {
            out["hygiene"] = try hygiene()
        }
        out["cursor"] = .int(newCursor)
        out["more"] = .bool(sync.pullDue)
        out["outbox"] = .int(try Outbox.count(db))
        return .object(out)
    }

    /// An acknowledged change of this device, as `confirm` folds it in.
    struct Confirmed {
        var ops: String
        var hlc: Int64
        var schemaVersion: Int64
        var serverSeq: Int64?
    }

    /// An acknowledged change moves from the outbox into the confirmed state,
    /// so the view (confirmed + pending) stays the same. Usually the shadow
    /// keeps its old version number, and the pull brings the hub's state,
    /// which is newer and replaces it. With `exactVersion` the hub has said
    /// ("own") that these changes on the held state are its state at that
    /// version: the fields they wrote take their server sequences, as the
    /// hub's merge gives them.
    ///
    /// A change the held state already contains (a pull brought the record
    /// after the hub applied it, while the answer to it was lost) is not
    /// folded in again; the view, which counted it twice until now, then
    /// needs a rebase: `contained`. An increment that would overflow the
    /// held counter is left out, and `repull` is the version to pull the
    /// record again from.
    private func confirm(_ changes: [Confirmed], type: String, id: String,
                         exactVersion: Int64?) throws(FieldSyncError) -> (contained: Bool, repull: Int64?) {
        guard let spec = views[type]?.spec else { return (false, nil) }
        let key = ExactString(type, id)
        var (state, held) = (RecordState(absent: ()), Int64(0))
        if let kept = shadows[key] {
            (state, held) = kept
        } else if let stored = try storedShadow(type: type, id: id) {
            (state, held) = stored
            shadows.read(key, stored)
        }
        // Stale since the hub was restored (HubRestore.swift): it may hold
        // these changes already; the pull that is due replaces it.
        if held < 0 { return (false, nil) }
        var contained = false
        var exactVersion = exactVersion
        var repull: Int64?
        for entry in changes {
            if let serverSeq = entry.serverSeq, serverSeq <= held {
                contained = true
                continue
            }
            let change = Change(json: try storedOps(entry.ops, "fs_outbox.ops of \(type)/\(id)"))
            guard case .success(let current) = schema.upcast(change, type: type, from: entry.schemaVersion) else { continue }
            let stamp = Stamp(hlc: entry.hlc, device: deviceId)
            let report = try Merge.merge(current, stamp: stamp, into: &state, spec: spec, replaying: true)
            if !report.overflowed.isEmpty {
                exactVersion = nil   // not the hub's state: keep the held version
                repull = held
            }
            guard exactVersion != nil, let serverSeq = entry.serverSeq else { continue }
            for (field, resolution) in report.fields where resolution != .lost { state.versions[field] = serverSeq }
            if current.delete && state.deleted && state.deletedAt == stamp {
                for f in spec.fields { state.versions[f.name] = serverSeq }
            }
        }
        // A cached (fetched) record the operator changed is a normal record again.
        try db.run(Store.writeShadow, [.text(type), .text(id), .int(exactVersion ?? held), .bytes(state.text(tags: false)), .null])
        state.tags = [:]   // as the stored text holds it
        shadows.wrote(key, (state, exactVersion ?? held))
        return (contained, repull)
    }

    /// Stores pulled server state if it is newer than what the device has;
    /// returns whether it did. Stamps it carries advance the device's clock.
    private func storeShadow(type: String, id: String, version: Int64, state record: RecordState, clock: inout HybridClock,
                             cacheUntil: Int64? = nil) throws(FieldSyncError) -> Bool {
        var current: (version: Int64, cachedUntil: Int64?)?
        try db.query(Store.shadowVersionAndCache, [.text(type), .text(id)]) { r in
            current = (r.int(0), r.optionalInt(1))
            return false
        }
        if let current, current.version >= version { return false }
        // A stamp further ahead than the skew bound is kept in the state (the
        // hub's verdict) but never adopted by this device's clock.
        let wall = now()
        for stamp in record.stamps.values { clock.observe(stamp.hlc, wallMs: wall, maxSkewMs: maxClockSkewMs) }
        if let at = record.deletedAt { clock.observe(at.hlc, wallMs: wall, maxSkewMs: maxClockSkewMs) }
        // A fetched record is cached for a while, unless the device already
        // keeps it as a normal record; anything pulled is a normal record.
        let cached: SQLValue = cacheUntil.map { until in current == nil || current?.cachedUntil != nil ? .int(until) : .null } ?? .null
        try db.run(Store.writeShadow, [.text(type), .text(id), .int(version), .bytes(record.text(tags: false)), cached])
        shadows.forget(ExactString(type, id))
        try db.run(Store.unevict, [.text(type), .text(id)])
        return true
    }

    /// The kept confirmed states that differ from the stored ones (for tests:
    /// none, ever).
    package func shadowsDifferingFromStorage() throws(FieldSyncError) -> [String] {
        var differing: [String] = []
        for (key, kept) in shadows.entries {
            guard let (type, id) = key.pair else {
                differing.append("a key that is not a type and an id")
                continue
            }
            let stored = try storedShadow(type: type, id: id)
            if stored?.state != kept.state || stored?.version != kept.version { differing.append("\(type)/\(id)") }
        }
        return differing
    }

    private func storedShadow(type: String, id: String) throws(FieldSyncError) -> StateCache.Entry? {
        var stored: StateCache.Entry?
        try db.query(Store.shadowState, [.text(type), .text(id)]) { (row) throws(FieldSyncError) -> Bool in
            stored = (RecordState(json: try row.storedObject(0, "fs_shadow.state of \(type)/\(id)")), row.int(1))
            return false
        }
        return stored
    }

    static let shadowVersion = PreparedSQL("SELECT version FROM fs_shadow WHERE type = ? AND id = ?")
    static let shadowState = PreparedSQL("SELECT state, version FROM fs_shadow WHERE type = ? AND id = ?")
    static let shadowVersionAndCache = PreparedSQL("SELECT version, cached_until FROM fs_shadow WHERE type = ? AND id = ?")
    static let writeShadow = PreparedSQL("INSERT OR REPLACE INTO fs_shadow(type, id, version, state, cached_until) VALUES(?, ?, ?, ?, ?)")
    static let unevict = PreparedSQL("DELETE FROM fs_evicted WHERE type = ? AND id = ?")

    // MARK: fail and connectivity

    /// The transport failed: the batch goes back to pending (nothing lost,
    /// no attempt counted against its entries) and the next try backs off.
    package func fail(reason: String) throws(FieldSyncError) {
        try makingRoom { () throws(FieldSyncError) in
            try db.run("UPDATE fs_outbox SET state = 'pending', batch = NULL WHERE state = 'inflight'")
        }
        var random = SystemRandomNumberGenerator()
        sync.failures += 1
        sync.retryAt = now() + sync.backoff(attempt: sync.failures, random: &random)
        sync.lastFailure = reason
    }

    /// Connectivity changed. Up: resume now, whatever the backoff was.
    /// The write comes first: if it fails (FS_ERR_BUSY, FS_ERR_FULL) nothing
    /// changes, in memory either.
    package func connectivity(up: Bool) throws(FieldSyncError) {
        if up {
            try makingRoom { () throws(FieldSyncError) in
                try db.run("UPDATE fs_outbox SET next_attempt_at = 0 WHERE state = 'pending' AND next_attempt_at > 0")
            }
        }
        sync.online = up
        guard up else { return }
        sync.failures = 0
        sync.retryAt = 0
        sync.pullDue = true
    }

    /// How this device's writes and audit rows fared at the hub (fs_store_stats).
    static let writeCounters: Set<String> = ["writes_won", "writes_lost", "writes_merged", "writes_resolved", "writes_rejected",
                                             "audit_refused"]

    var syncStats: JSONObject {
        let now = self.now()
        let state = sync.upgradeRequired != nil ? "upgrade_required" : sync.authRefused != nil ? "auth_refused"
            : !sync.online ? "offline" : sync.retryAt > now ? "backoff" : "ready"
        return [
            "sync_state": .string(state), "cursor": .int(sync.cursor), "batches_sent": .int(sync.batches),
            "transport_failures": .int(sync.failures), "last_sync_at": .int(sync.lastSyncAt),
            "last_failure": .string(sync.lastFailure ?? ""), "upgrade_required": .string(sync.upgradeRequired ?? ""),
            "audit_unacked": .int(lastSeq - sync.auditAckedThrough),
        ]
    }
}

extension Connection {
    /// Audit rows selected by `clause` ("WHERE ... ORDER BY ..."), complete.
    func queryAudit(_ clause: String, _ values: [SQLValue], device: String) throws(FieldSyncError) -> [AuditRow] {
        var rows: [AuditRow] = []
        try queryOnce("""
            SELECT audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, prev_hash, hash,
                   outcome, reason, server_received_at FROM fs_audit
            """ + " " + clause, values) { (r) throws(FieldSyncError) -> Bool in
            rows.append(AuditRow(
                auditId: r.int(0), deviceId: device, actor: r.text(1), action: r.text(2), type: r.text(3), id: r.text(4),
                input: try r.storedJSON(5, "fs_audit.input of audit row \(r.int(0))"), deviceTime: r.int(6), hlc: r.int(7),
                outboxKeys: try storedKeys(r, 8, "fs_audit.outbox_keys of audit row \(r.int(0))"),
                prevHash: r.text(9), hash: r.text(10), outcome: r.text(11), reason: r.optionalText(12),
                serverReceivedAt: r.optionalInt(13)))
            return true
        }
        return rows
    }
}

/// An entry's ops as the outbox stored them; text that does not read back
/// is damage (FS_ERR_CORRUPT), not an empty change.
func storedOps(_ text: String, _ place: @autoclosure () -> String) throws(FieldSyncError) -> JSON {
    var text = text
    let parsed = text.withUTF8 { buf in
        Result { () throws(FieldSyncError) -> JSON in
            guard let base = buf.baseAddress, !buf.isEmpty else { throw .json("it is empty") }
            return try JSON.parse(bytes: base, count: buf.count, what: "stored ops", limit: Int.max, depth: Limits.maxMessageDepth)
        }
    }
    let value: JSON
    do { value = try parsed.get() } catch { throw .corrupt("\(place()) cannot be read: \(error.message)") }
    guard value.object != nil else { throw .corrupt("\(place()) is \(value.kind), not a JSON object") }
    return value
}

/// An audit row's outbox keys as stored: an array of strings, or damage.
func storedKeys(_ row: Statement, _ column: Int32, _ place: @autoclosure () -> String) throws(FieldSyncError) -> [String] {
    let stored = try row.storedJSON(column, place())
    guard let keys = stored.array else { throw .corrupt("\(place()) is \(stored.kind), not an array") }
    var out: [String] = []
    for key in keys {
        guard let s = key.string else { throw .corrupt("\(place()) holds \(key.kind), not a key") }
        out.append(s)
    }
    return out
}

/// `seqs` as runs of consecutive numbers, ascending (duplicates fold in), so
/// that a statement over a batch runs once per run instead of once per entry.
func consecutiveRuns(_ seqs: [Int64]) -> [ClosedRange<Int64>] {
    var runs: [ClosedRange<Int64>] = []
    for seq in seqs.sorted() {
        if let last = runs.last, seq <= last.upperBound &+ 1 {
            if seq > last.upperBound { runs[runs.count - 1] = last.lowerBound...seq }
        } else {
            runs.append(seq...seq)
        }
    }
    return runs
}
