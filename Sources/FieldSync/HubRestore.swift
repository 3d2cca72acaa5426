// A hub restored from an earlier copy of its file (docs/OPERATIONS.md
// "Restoring a hub"). The copy has the hub's key, so devices trust it, but
// its history stops where the copy was taken: the changes it numbered since
// and the entries it acknowledged since are gone. Devices deleted nothing
// they need: acknowledged entries stay in fs_acked for `acked_retention_s`.
//
// Every protocol-2 answer says which generation of the hub answers (a copy
// written by fs_hub_backup is one more), its high-water sequence, and
// (`holds`) the highest seq it holds of this device; every request says the
// highest seq the device knows acknowledged (`acked`). A hub that does not
// hold it answers the request's entries "retry" (hub_restored) and applies
// none: they must not land before the work sent again. A device learns the
// hub went back in time when the generation differs from the one it saw
// last, when its cursor is ahead of the hub's sequence, when it keeps an
// acknowledged entry above `holds`, or when the hub held its entries back
// (the last two catch a copy taken by other means, which keeps the
// generation). Then, in one write transaction, every acknowledged entry it
// kept goes back to the outbox under its own seq (the restored hub applies
// each it does not hold once, and answers "duplicate" for the others), the
// audit rows above the hub's head go back to unsent so the chain continues
// from it, and every confirmed state is marked stale and pulled again from
// cursor 0. Entries older than the window are gone: the loss is counted and
// reported, never silent.
//
// This is the opposite of Restore.swift (the store went back, the hub did
// not): there the store is behind its hub, here ahead of it.

extension Wire.Request {
    /// What a device that recovered from a restored hub tells it (logged
    /// by the hub as "restored_hub", or "hub_restore_incomplete" with a loss).
    struct Recovery: Equatable {
        var generation: Int64
        var fromGeneration: Int64
        var resent: Int64
        var lost: Int64
        var lostFrom: Int64
        var lostTo: Int64

        init(generation: Int64, fromGeneration: Int64, resent: Int64, lost: Int64, lostFrom: Int64, lostTo: Int64) {
            self.generation = generation
            self.fromGeneration = fromGeneration
            self.resent = resent
            self.lost = lost
            self.lostFrom = lostFrom
            self.lostTo = lostTo
        }

        init(_ o: JSONObject) throws(FieldSyncError) {
            let m = Wire.Members("request: recovery")
            generation = try m.int(o["generation"], "generation", 0...Wire.maxSeq) ?? 0
            fromGeneration = try m.int(o["from_generation"], "from_generation", 0...Wire.maxSeq) ?? 0
            resent = try m.int(o["resent"], "resent", 0...Wire.maxSeq) ?? 0
            lost = try m.int(o["lost"], "lost", 0...Wire.maxSeq) ?? 0
            lostFrom = try m.int(o["lost_from"], "lost_from", 0...Wire.maxSeq) ?? 0
            lostTo = try m.int(o["lost_to"], "lost_to", 0...Wire.maxSeq) ?? 0
        }

        var json: JSON {
            .object(["from_generation": .int(fromGeneration), "generation": .int(generation), "lost": .int(lost),
                     "lost_from": .int(lostFrom), "lost_to": .int(lostTo), "resent": .int(resent)])
        }
    }
}

extension HubStorage {
    /// The hub's side of a device's recovery: counted, and kept in the log
    /// the operator reads (fs_hub_devices "refusals"), beside "restored_store".
    func logRecovery(_ r: Wire.Request.Recovery, device: String, at now: Int64) throws(FieldSyncError) {
        try increment("devices_recovered")
        try logRefusalRow(device: device, code: "restored_hub", message: """
            the device found this hub restored from an earlier copy (generation \(r.fromGeneration) -> \(r.generation)): \
            it sends again the \(r.resent) acknowledged entries it kept (those this hub holds are duplicates) and pulls again from the start
            """, at: now)
        if r.lost > 0 {
            try increment("devices_restore_incomplete")
            try logRefusalRow(device: device, code: "hub_restore_incomplete", message: """
                up to \(r.lost) entries \(r.lostFrom)..\(r.lostTo) of the device, acknowledged before this hub was restored, \
                are lost: the device had evicted them (older than its acked_retention_s)
                """, at: now)
        }
    }
}

extension Store {
    static let ackedDDL = """
        CREATE TABLE IF NOT EXISTS fs_acked(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, hlc INTEGER NOT NULL,
            schema_version INTEGER NOT NULL, ops TEXT NOT NULL, base TEXT, base_values TEXT, cursor INTEGER NOT NULL DEFAULT 0,
            acked_at INTEGER NOT NULL)
        """
    /// Acknowledged entries leave the outbox for fs_acked, one statement per
    /// run of seqs (receive's hot path).
    static let keepAcked = PreparedSQL("""
        INSERT OR REPLACE INTO fs_acked(seq, type, id, hlc, schema_version, ops, base, base_values, cursor, acked_at)
        SELECT seq, type, id, hlc, schema_version, ops, base, base_values, cursor, ? FROM fs_outbox WHERE seq BETWEEN ? AND ?
        """)

    /// How often a receive evicts acknowledged entries past the window
    /// (a hygiene pass does too): a scan of fs_acked, so not on every receive.
    static let ackedEvictionIntervalMs: Int64 = 3_600_000

    /// Evicts acknowledged entries older than the window (inside the
    /// caller's write), remembering the highest seq evicted: the hub holding
    /// less than that means entries are lost. Returns how many it evicted
    /// and the highest seq evicted so far, for the caller to keep once committed.
    func evictAcked(now: Int64) throws(FieldSyncError) -> (count: Int64, through: Int64) {
        let cutoff = now - hygieneSettings.ackedRetentionS * 1000   // safe: both bounded (HygieneSettings, clampWall)
        guard let top = try db.scalar("SELECT max(seq) FROM fs_acked WHERE acked_at < ?", [.int(cutoff)]) else {
            return (0, sync.ackedEvictedThrough)
        }
        try db.run("DELETE FROM fs_acked WHERE acked_at < ?", [.int(cutoff)])
        let n = db.changes
        guard top > sync.ackedEvictedThrough else { return (n, sync.ackedEvictedThrough) }
        try setMeta("acked_evicted_through", .int(top))
        return (n, top)
    }

    /// The report of a recovery, as requests carry it until one is answered.
    func recoveryMember() throws(FieldSyncError) -> JSON? {
        guard sync.proto > Wire.full, let text = sync.recoveryReport else { return nil }
        return try JSON.parse(text, what: "fs_meta.hub_recovery_report")
    }

    /// The highest seq this device knows its hub acknowledged, as requests
    /// carry it (`acked`): a hub without it is behind the device. Entries
    /// already reported lost are not asked for again.
    func ackedHigh() throws(FieldSyncError) -> Int64 {
        // Protocol 1 answers say nothing of the hub: a device could not recover.
        if sync.proto <= Wire.full { return 0 }
        let kept = try db.scalar("SELECT max(seq) FROM fs_acked") ?? 0
        return sync.ackedEvictedThrough > sync.hubLostThrough ? max(kept, sync.ackedEvictedThrough) : kept
    }

    /// Whether the hub that answered went back in time (see the top of the file).
    private func hubWentBack(_ hub: Wire.Response.HubInfo, holds: Wire.Response.Holds?, heldBack: Bool) throws(FieldSyncError) -> Bool {
        if heldBack { return true }
        if let seen = sync.hubGeneration, seen != hub.generation { return true }
        if sync.cursor > hub.seq { return true }
        guard let holds else { return false }
        if let acked = try db.scalar("SELECT max(seq) FROM fs_acked"), acked > holds.seq { return true }
        return sync.ackedEvictedThrough > max(holds.seq, sync.hubLostThrough)
    }

    /// Recovers when `response` (verified, answering the newest batch this
    /// store sent) shows its hub was restored from an earlier copy.
    func recoverIfHubRestored(_ response: inout Wire.Response, answered: Int64) throws(FieldSyncError) {
        // Entries the hub held back were not decided: they stay as they were,
        // no attempt counted, and go again (after the recovery's, if any).
        let before = response.results.count
        response.results.removeAll { $0.status == "retry" && $0.reason == Hub.restoredReason }
        let heldBack = response.results.count < before
        // A late or repeated answer to an earlier batch tells nothing new:
        // only the answer to the newest batch is judged, and not twice.
        guard let hub = response.hub, answered == sync.batches, answered > sync.hubRecoveryBatch,
              try hubWentBack(hub, holds: response.holds, heldBack: heldBack) else { return }
        let holds = response.holds
        let now = self.now()
        let outcome = try write { () throws(FieldSyncError) -> (report: String, lost: String?, lostThrough: Int64, auditAcked: Int64)? in
            // Caught up with the file: another handle may have recovered already.
            guard answered == sync.batches, answered > sync.hubRecoveryBatch, try hubWentBack(hub, holds: holds, heldBack: heldBack) else {
                return nil
            }
            let top = holds?.seq ?? 0
            // Entries older than the window that the hub no longer holds.
            var lost: (from: Int64, to: Int64, count: Int64)?
            var lostThrough = sync.hubLostThrough
            if let holds, sync.ackedEvictedThrough > max(holds.seq, sync.hubLostThrough) {
                let from = max(holds.seq, sync.hubLostThrough) + 1, to = sync.ackedEvictedThrough
                let kept = try db.scalar("""
                    SELECT (SELECT count(*) FROM fs_acked WHERE seq BETWEEN ?1 AND ?2) + (SELECT count(*) FROM fs_outbox WHERE seq BETWEEN ?1 AND ?2)
                    """, [.int(from), .int(to)]) ?? 0
                let count = to - from + 1 - kept   // safe: 1 <= from <= to <= maxSeq
                if count > 0 { lost = (from, to, count) }
                try setMeta("hub_lost_through", .int(to))
                lostThrough = to
            }
            // Every kept entry goes again, not only those above `holds`: one
            // decided out of order (after a later one was) may be missing
            // below it. The hub answers those it holds "duplicate".
            try db.run("""
                INSERT OR IGNORE INTO fs_outbox(seq, type, id, hlc, schema_version, ops, base, base_values, cursor)
                SELECT seq, type, id, hlc, schema_version, ops, base, base_values, cursor FROM fs_acked
                """)
            let resent = db.changes
            try db.run("DELETE FROM fs_acked")
            try rebaseResent(above: top)
            // Their audit rows go again, from the hub's head on: the chain
            // the hub holds continues with the very rows that followed it.
            let auditTop = holds?.auditId ?? 0
            try db.run("""
                UPDATE fs_audit SET outcome = 'pending', reason = NULL
                WHERE audit_id > ? AND outcome = 'applied' AND audit_id IN (SELECT seq FROM fs_outbox WHERE seq > ?)
                """, [.int(top), .int(top)])
            try db.run("UPDATE fs_audit SET server_received_at = NULL WHERE audit_id > ? AND server_received_at IS NOT NULL",
                       [.int(auditTop)])
            let auditAcked = min(sync.auditAckedThrough, auditTop)
            try setMeta("audit_acked_through", .int(auditAcked))
            // Every confirmed state may hold changes the hub lost, or numbers
            // it will give to other changes: stale until pulled again, and
            // not folded into meanwhile (the view keeps showing them).
            try db.run("UPDATE fs_shadow SET version = -1")
            try setMeta("cursor", .int(0))
            try setMeta("hub_generation", .int(hub.generation))
            try setMeta("hub_recovery_batch", .int(answered))
            try db.run("""
                INSERT INTO fs_meta(key, value) VALUES('hub_recoveries', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1
                """)
            var message: String?
            if let lost {
                message = "hub_restore_incomplete: up to \(lost.count) entries \(lost.from)..\(lost.to) acknowledged by the hub before it was restored were evicted (older than acked_retention_s) and are lost"
                try db.run("""
                    INSERT INTO fs_meta(key, value) VALUES('entries_lost_in_hub_restore', ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value
                    """, [.int(lost.count)])
                try setMeta("hub_restore_incomplete", .string(message ?? ""))
            }
            let report = Wire.Request.Recovery(generation: hub.generation, fromGeneration: sync.hubGeneration ?? hub.generation,
                                               resent: resent, lost: lost?.count ?? 0, lostFrom: lost?.from ?? 0, lostTo: lost?.to ?? 0)
            let reportText = report.json.text
            try setMeta("hub_recovery_report", .string(reportText))
            var last = report.json.object ?? [:]
            last["at"] = .int(now)
            last["hub_seq"] = .int(hub.seq)
            last["holds_seq"] = holds.map { .int($0.seq) } ?? .null
            last["cursor_was"] = .int(sync.cursor)
            // Rows audit_keep_days evicted cannot go again: the hub's audit
            // shows the gap (audit_gaps).
            let anchor = try auditAnchor().seq
            last["audit_rows_lost"] = .int(max(0, anchor - auditTop))
            try setMeta("last_hub_recovery", .string(JSON.object(last).text))
            return (reportText, message, lostThrough, auditAcked)
        }
        guard let outcome else { return }
        shadows.forgetAll()
        sync.cursor = 0
        sync.hubGeneration = hub.generation
        sync.hubRecoveryBatch = answered
        sync.recoveryReport = outcome.report
        sync.auditAckedThrough = outcome.auditAcked
        sync.hubLostThrough = outcome.lostThrough
        if let lost = outcome.lost { sync.lastFailure = lost }
        // The page was cut from a cursor the restored hub never reached.
        response.cursor = nil
        response.more = true
    }

    /// A `server` or `custom` write sent again names the version it was
    /// based on in the lost history. When an earlier entry of this device
    /// sent again wrote the field, that version is that entry's (or a later
    /// one's the hub lost too): it becomes {"after": seq}, which the hub
    /// resolves to the number it gives that entry now.
    private func rebaseResent(above top: Int64) throws(FieldSyncError) {
        var writers: [ExactString: [String: Int64]] = [:]
        var rewritten: [(seq: Int64, base: JSONObject)] = []
        try db.query("SELECT seq, type, id, ops, base FROM fs_outbox WHERE seq > ? AND state != 'rejected' ORDER BY seq", [.int(top)]) {
            (r) throws(FieldSyncError) -> Bool in
            let seq = r.int(0), record = ExactString(r.text(1), r.text(2))
            if !r.isNull(4), var base = try r.storedObject(4, "fs_outbox.base of \(seq)").object, let earlier = writers[record] {
                var changed = false
                for (field, value) in base where value.int != nil {
                    if let writer = earlier[field] {
                        base[field] = .object(["after": .int(writer)])
                        changed = true
                    }
                }
                if changed { rewritten.append((seq, base)) }
            }
            for field in (try r.storedObject(3, "fs_outbox.ops of \(seq)")["set"]?.object ?? [:]).keys {
                writers[record, default: [:]][field] = seq
            }
            return true
        }
        for (seq, base) in rewritten { try db.run("UPDATE fs_outbox SET base = ? WHERE seq = ?", [.bytes(JSON.object(base).bytes), .int(seq)]) }
    }
}
