// A store restored from an older copy of its file (docs/SECURITY.md
// "Restored stores"). The copy has the device's key and instance, so the hub
// lets it in, but its sequence and audit chain are behind what the hub holds:
// its new actions reuse seqs the device already used. The hub answers them
// "key_reused" (and their audit rows "audit_id_reused") and says, in every
// response, the highest seq and chain head it holds for the device. From a
// verified response the store recovers by itself: its actions from the first
// reused seq on are numbered again above the hub's high-water mark, their
// audit rows chained onto the hub's head, and sent again; nothing is lost,
// nothing applied twice (a row the hub holds with the same content is a
// duplicate, never renumbered).

extension Store {
    /// Recovers when `response` (verified: the store authenticates) shows the
    /// store is behind its hub; removes from it the answers to the entries
    /// and rows it renumbered, which go back to pending.
    func recoverIfRestored(_ response: inout Wire.Response) throws(FieldSyncError) {
        guard identity.authenticates, let holds = response.holds, response.hub?.authenticated != false else { return }
        var first: Int64?
        for r in response.results where r.status == "rejected" && r.reason == "key_reused" {
            if let s = Outbox.seq(ofKey: r.key, device: deviceId) { first = min(first ?? s, s) }
        }
        for refused in response.auditRefused where refused.reason == "audit_id_reused" { first = min(first ?? refused.auditId, refused.auditId) }
        let top = max(holds.seq, holds.auditId)
        // What the hub took under its number in this response (it had no
        // other content there) keeps its number: sent again under another,
        // it would be applied twice.
        var kept: Set<Int64> = []
        for r in response.results where r.status == "applied" || r.status == "duplicate" {
            if let s = Outbox.seq(ofKey: r.key, device: deviceId) { kept.insert(s) }
        }
        for ack in response.auditAcks { kept.insert(ack.auditId) }
        // A reused seq above what the hub holds is not this store's past.
        if let f = first, f > top { first = nil }
        let head = try write { () throws(FieldSyncError) -> (seq: Int64, hash: String)? in
            guard first != nil || top > lastSeq else { return nil }
            var rows: [AuditRow] = []
            var inputs: [[UInt8]] = []
            if let first {
                try db.query("""
                    SELECT audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys FROM fs_audit
                    WHERE audit_id >= ? AND server_received_at IS NULL ORDER BY audit_id
                    """, [.int(first)]) { (r) throws(FieldSyncError) -> Bool in
                    if kept.contains(r.int(0)) { return true }
                    rows.append(AuditRow(auditId: r.int(0), deviceId: deviceId, actor: r.text(1), action: r.text(2), type: r.text(3),
                                         id: r.text(4), input: .null, deviceTime: r.int(6), hlc: r.int(7),
                                         outboxKeys: try storedKeys(r, 8, "fs_audit.outbox_keys of \(r.int(0))"), prevHash: "", hash: ""))
                    inputs.append(r.bytes(5).map(Array.init) ?? Array("null".utf8))
                    return true
                }
            }
            guard rows.count < Wire.maxSeq - top else { throw .corrupt("no seq is left above the hub's high-water mark \(top)") }
            let oldIds = rows.map(\.auditId)
            // Only rows that meet the hub's numbers move. A late or repeated
            // answer to a request sent before the recovery names reuses that
            // are settled: its rows are above its `holds` already, or the
            // numbers they would take are taken (rows the hub acknowledged
            // since). Nothing is renumbered twice.
            if let lowest = oldIds.first {
                let moving = Set(oldIds)
                var taken = false
                try db.query("SELECT audit_id FROM fs_audit WHERE audit_id > ? AND audit_id <= ?",
                             [.int(top), .int(top + Int64(rows.count))]) { r in
                    taken = !moving.contains(r.int(0))
                    return !taken
                }
                if lowest > top || taken { return nil }
            } else if top <= lastSeq {
                return nil
            }
            var renumbered: [Int64: Int64] = [:]
            for (i, id) in oldIds.enumerated() { renumbered[id] = top + 1 + Int64(i) }
            func key(_ k: String) -> String {
                guard let s = Outbox.seq(ofKey: k, device: deviceId), let n = renumbered[s] else { return k }
                return Outbox.key(device: deviceId, seq: n)
            }
            // Hashes are chained in order; rows move from the highest down, so
            // a new id never meets an old one still in place.
            var previous = holds.auditHash ?? lastHash
            for i in rows.indices {
                rows[i].auditId = top + 1 + Int64(i)
                rows[i].outboxKeys = rows[i].outboxKeys.map(key)
                rows[i].prevHash = previous
                rows[i].hash = try rows[i].computedHash(input: inputs[i])
                previous = rows[i].hash
            }
            for i in rows.indices.reversed() {
                let row = rows[i], from = oldIds[i], to = row.auditId
                try db.run("""
                    UPDATE fs_audit SET audit_id = ?, outbox_keys = ?, prev_hash = ?, hash = ?, outcome = 'pending', reason = NULL,
                        server_received_at = NULL WHERE audit_id = ?
                    """, [.int(to), .bytes(AuditLog.keysText(row.outboxKeys)), .text(row.prevHash), .text(row.hash), .int(from)])
                try db.run("""
                    UPDATE fs_outbox SET seq = ?, state = 'pending', batch = NULL, reason = NULL, attempts = 0, next_attempt_at = 0
                    WHERE seq = ?
                    """, [.int(to), .int(from)])
            }
            // A server field written on top of the device's own earlier entry
            // names that entry's seq ({"after": n}).
            for to in renumbered.values {
                var base: JSONObject?
                try db.query("SELECT base FROM fs_outbox WHERE seq = ? AND base LIKE '%\"after\"%'", [.int(to)]) { (r) throws(FieldSyncError) -> Bool in
                    base = try r.storedObject(0, "fs_outbox.base of \(to)").object
                    return false
                }
                guard var b = base else { continue }
                for (field, value) in b {
                    if let after = value["after"]?.int, let n = renumbered[after] { b[field] = .object(["after": .int(n)]) }
                }
                try db.run("UPDATE fs_outbox SET base = ? WHERE seq = ?", [.bytes(JSON.object(b).bytes), .int(to)])
            }
            let newHead = (seq: top + Int64(rows.count), hash: previous)
            try setMeta("restore_seq", .int(newHead.seq))
            try setMeta("restore_hash", .string(newHead.hash))
            try db.run("""
                INSERT INTO fs_meta(key, value) VALUES('restored_recoveries', 1)
                ON CONFLICT(key) DO UPDATE SET value = value + 1
                """)
            try setMeta("last_recovery", .string(JSON.object([
                "at": .int(now()), "hub_seq": .int(top), "renumbered": .int(Int64(rows.count)),
                "from_seq": first.map(JSON.int) ?? .null, "local_seq": .int(lastSeq),
            ]).text))
            return newHead
        }
        guard let head else { return }
        lastSeq = head.seq
        lastHash = head.hash
        if let first {
            response.results.removeAll { Outbox.seq(ofKey: $0.key, device: deviceId).map { $0 >= first && !kept.contains($0) } ?? false }
            response.auditRefused.removeAll { $0.auditId >= first }
        }
    }
}
