// Storage hygiene (docs/HYGIENE.md): keep a device database small for years. A pass
// evicts acknowledged records that are archived or outside their type's
// window, fetched records whose cache time is up, and acknowledged audit rows
// past the audit window (keeping the chain's anchor), then reclaims pages.
// Nothing the hub has not acknowledged is ever evicted.

struct HygieneSettings {
    var auditKeepDays: Int64? = nil
    var onOpen = false
    var everyActions: Int64 = 0
    var fetchTTLMs: Int64 = 600_000
    var lastPassSeq: Int64 = 0
    /// How long acknowledged entries are kept, in seconds, to be sent again
    /// to a hub restored from an earlier copy (HubRestore.swift); 0 keeps none.
    var ackedRetentionS: Int64 = 604_800

    static let optionKeys: Set<String> = ["audit_keep_days", "hygiene_on_open", "hygiene_every", "fetch_ttl_ms", "acked_retention_s"]

    /// The longest day window (100 years), for audit_keep_days and a
    /// type's keep_days: `days * dayMs` stays far from overflow.
    static let maxDays: Int64 = 36_600

    mutating func configure(_ opts: JSONObject) throws(FieldSyncError) {
        if opts["audit_keep_days"] != nil {
            var days: Int64 = 0
            try integerOption(opts, "audit_keep_days", 1...HygieneSettings.maxDays, into: &days,
                              "100 years; omit it to keep audit rows forever")
            auditKeepDays = days
        }
        if let v = opts["hygiene_on_open"] {
            guard let b = v.bool else { throw .arg("options: \"hygiene_on_open\" must be true or false") }
            onOpen = b
        }
        try integerOption(opts, "hygiene_every", 0...1_000_000_000, into: &everyActions, "0: never after a receive")
        try integerOption(opts, "fetch_ttl_ms", 1...SyncState.maxDurationMs, into: &fetchTTLMs, "10 years")
        try integerOption(opts, "acked_retention_s", 0...SyncState.maxDurationMs / 1000, into: &ackedRetentionS,
                          "10 years; 0 keeps no acknowledged entry, so a restored hub loses them")
    }
}

private let dayMs: Int64 = 86_400_000

extension Store {
    /// One hygiene pass; returns the report (header fs_store_hygiene).
    package func hygiene() throws(FieldSyncError) -> JSON {
        let now = self.now()
        let bytesBefore = try fileBytes()
        var evicted: [String: Int64] = [:]
        var expired: Int64 = 0
        var auditEvicted: Int64 = 0
        var acked: (count: Int64, through: Int64) = (0, sync.ackedEvictedThrough)
        try write { () throws(FieldSyncError) in
            for name in views.keys.sorted() {
                guard let view = views[name] else { continue }
                let retention = view.spec.retention
                var victims: [(id: String, expired: Bool)] = []
                // Only records the hub has confirmed (a shadow row) and that have
                // no outbox entry in any state are candidates.
                try db.query(Store.hygieneCandidates, [.text(name)]) { (r) throws(FieldSyncError) -> Bool in
                    let id = r.text(0)
                    let state = RecordState(json: try r.storedObject(1, "fs_shadow.state of \(name)/\(id)"))
                    if let until = r.optionalInt(2) {
                        if until <= now { victims.append((id, true)) }
                        return true
                    }
                    if let retention, Store.evictable(state, retention: retention, now: now) { victims.append((id, false)) }
                    return true
                }
                for victim in victims {
                    try view.delete(victim.id, db: db)
                    try db.run("DELETE FROM fs_shadow WHERE type = ? AND id = ?", [.text(name), .text(victim.id)])
                    shadows.forget(ExactString(name, victim.id))
                    try db.run("INSERT OR REPLACE INTO fs_evicted(type, id, evicted_at) VALUES(?, ?, ?)",
                               [.text(name), .text(victim.id), .int(now)])
                    if victim.expired { expired += 1 } else { evicted[name, default: 0] += 1 }
                }
            }
            // Eviction markers only serve a "fetch it" message; after 90 days
            // a plain "not found" will do, and the table stays small.
            try db.run("DELETE FROM fs_evicted WHERE evicted_at < ?", [.int(now - 90 * dayMs)])
            acked = try evictAcked(now: now)
            if let days = hygieneSettings.auditKeepDays {
                auditEvicted = try evictAudit(before: now - days * dayMs)
            }
            // So that hygiene_every counts from the last pass of any handle.
            try setMeta("hygiene_pass_seq", .int(lastSeq))
        }
        hygieneSettings.lastPassSeq = lastSeq
        sync.ackedEvictedThrough = acked.through
        ackedEvictedAt = now
        // Reclaim the freed pages: incremental vacuum moves free pages to the
        // end and truncates, and a checkpoint carries that into the file.
        // PASSIVE: a host reading the file must not make the pass wait; what
        // a reader holds is reclaimed by a later checkpoint.
        try db.exec("PRAGMA incremental_vacuum")
        try db.exec("PRAGMA wal_checkpoint(PASSIVE)")
        let bytesAfter = try fileBytes()
        var report: JSONObject = [
            "records_evicted": .int(evicted.values.reduce(0, +)), "fetched_expired": .int(expired),
            "audit_rows_evicted": .int(auditEvicted), "acked_evicted": .int(acked.count), "bytes_before": .int(bytesBefore), "bytes_after": .int(bytesAfter),
            "bytes_reclaimed": .int(max(0, bytesBefore - bytesAfter)),
        ]
        for (name, n) in evicted { report["records_evicted_\(name)"] = .int(n) }
        return .object(report)
    }

    static let hygieneCandidates = PreparedSQL("""
        SELECT s.id, s.state, s.cached_until FROM fs_shadow s
        WHERE s.type = ? AND NOT EXISTS (SELECT 1 FROM fs_outbox o WHERE o.type = s.type AND o.id = s.id)
        """)

    /// Archived (a field holds one of its archive_when values), or unchanged
    /// for longer than keep_days (judged by the newest stamp in its state).
    static func evictable(_ state: RecordState, retention: Retention, now: Int64) -> Bool {
        if !state.deleted {
            for (field, values) in retention.archiveWhen where values.contains(state.fields[field] ?? .null) { return true }
        }
        guard let days = retention.keepDays else { return false }
        let stamps = state.stamps.values.map(\.hlc) + [state.deletedAt?.hlc ?? 0]
        let lastChange = HybridClock.physical(stamps.max() ?? 0)
        return lastChange < now - days * dayMs
    }

    /// Deletes the oldest audit rows that the hub has received, that are
    /// settled, and that are older than `cutoff` — only as a prefix, so the
    /// chain stays verifiable from the anchor (the last evicted row's hash).
    private func evictAudit(before cutoff: Int64) throws(FieldSyncError) -> Int64 {
        var last: (id: Int64, hash: String)?
        try db.query("""
            SELECT audit_id, hash, device_time, server_received_at, outcome FROM fs_audit ORDER BY audit_id
            """) { r in
            let old = r.int(2) < cutoff
            let received = !r.isNull(3)
            let settled = r.text(4) != "pending"
            guard old && received && settled else { return false }
            last = (r.int(0), r.text(1))
            return true
        }
        guard let last else { return 0 }
        // Rejected and stuck entries are still listed for the host: their audit rows stay.
        let held = try db.scalar("SELECT min(seq) FROM fs_outbox WHERE seq <= ?", [.int(last.id)])
        var upTo = last.id, anchorHash = last.hash
        if let held {
            upTo = held - 1
            guard upTo > 0, let hash = try db.queryAudit("WHERE audit_id = ?", [.int(upTo)], device: deviceId).first?.hash else { return 0 }
            anchorHash = hash
        }
        let before = try db.scalar("SELECT count(*) FROM fs_audit WHERE audit_id <= ?", [.int(upTo)]) ?? 0
        if before == 0 { return 0 }
        try db.run("DELETE FROM fs_audit WHERE audit_id <= ?", [.int(upTo)])
        try setMeta("anchor_seq", .int(upTo))
        try setMeta("anchor_hash", .string(anchorHash))
        return before
    }

    func fileBytes() throws(FieldSyncError) -> Int64 {
        let pages = try db.scalar("PRAGMA page_count") ?? 0
        let size = try db.scalar("PRAGMA page_size") ?? 0
        return pages &* size
    }

    /// The audit chain's anchor: the hash the first kept row follows.
    func auditAnchor() throws(FieldSyncError) -> (seq: Int64, hash: String) {
        (try Store.meta("anchor_seq", db: db)?.int ?? 0, try Store.meta("anchor_hash", db: db)?.string ?? AuditRow.genesis)
    }
}
