// Several handles on one store file (two threads that each opened it, an app
// and `python -m fieldsync apply`, two processes): each handle keeps the next
// seq, the audit chain head, the clock and the sync progress in memory, and
// another connection may have moved any of them. So every write first catches
// up with the file: BEGIN IMMEDIATE has just read the file's state and holds
// the write lock until COMMIT; the pager's data version (which counts every
// commit to the file, this connection's own included) says whether anything
// was committed since this handle's last write; only then is the progress
// reread, in one statement. Measured with callgrind over 4,000 applies, the
// whole costs ~1,000 instructions an apply of ~139k (0.7 %), half of it the two
// file controls; a `PRAGMA data_version` statement instead cost 1,900 more.
import CSQLite

extension Connection {
    /// The pager's data version: changes with every commit to the file, by
    /// this connection or another, as seen by the last transaction begun.
    var dataVersion: UInt32 {
        var version: UInt32 = 0
        // Cannot fail for "main" on an open connection; a failure leaves 0,
        // which at worst makes the next write reread what it already has.
        _ = sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &version)
        return version
    }
}

extension Store {
    /// A write transaction on a handle that is current with the file.
    @inline(__always)
    func write<R>(_ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        let result = try db.transaction { () throws(FieldSyncError) -> R in
            if db.dataVersion != seenDataVersion { try reloadProgress() }
            return try body()
        }
        // This handle's own commit is no news to it. Another connection's
        // commit after it changes the version only when the next transaction
        // begins, so it is not missed.
        seenDataVersion = db.dataVersion
        return result
    }

    /// Rereads the progress outside a write (stats, a response to a batch
    /// another handle sent): one statement, so one state of the file.
    func catchUp() throws(FieldSyncError) { try reloadProgress() }

    /// The chain head (the newest audit row, or the anchor kept in fs_meta when
    /// older rows were evicted), the clock and the sync progress, in one read.
    static let progress = PreparedSQL("""
        SELECT h.audit_id, h.hash, h.hlc,
            (SELECT value FROM fs_meta WHERE key = 'anchor_seq'), (SELECT value FROM fs_meta WHERE key = 'anchor_hash'),
            (SELECT value FROM fs_meta WHERE key = 'hlc'), (SELECT value FROM fs_meta WHERE key = 'cursor'),
            (SELECT value FROM fs_meta WHERE key = 'batches'), (SELECT value FROM fs_meta WHERE key = 'audit_acked_through'),
            (SELECT value FROM fs_meta WHERE key = 'upgrade_required'), (SELECT value FROM fs_meta WHERE key = 'schema_version'),
            (SELECT value FROM fs_meta WHERE key = 'hygiene_pass_seq'),
            (SELECT value FROM fs_meta WHERE key = 'restore_seq'), (SELECT value FROM fs_meta WHERE key = 'restore_hash'),
            (SELECT value FROM fs_meta WHERE key = 'hub_generation'), (SELECT value FROM fs_meta WHERE key = 'hub_recovery_batch'),
            (SELECT value FROM fs_meta WHERE key = 'acked_evicted_through'), (SELECT value FROM fs_meta WHERE key = 'hub_lost_through'),
            (SELECT value FROM fs_meta WHERE key = 'hub_recovery_report')
        FROM (SELECT 1) LEFT JOIN (SELECT audit_id, hash, hlc FROM fs_audit ORDER BY audit_id DESC LIMIT 1) h ON 1
        """)

    private func reloadProgress() throws(FieldSyncError) {
        // fs_meta holds integers as integers (JSON.sqlLiteral); anything else
        // in an integer's place reads as absent, as Store.meta reads it.
        func int(_ r: Statement, _ column: Int32) -> Int64? {
            sqlite3_column_type(r.handle, column) == SQLITE_INTEGER ? r.int(column) : nil
        }
        func text(_ r: Statement, _ column: Int32) -> String? {
            sqlite3_column_type(r.handle, column) == SQLITE_TEXT ? r.text(column) : nil
        }
        var storedVersion: Int64?
        try db.query(Store.progress) { r in
            var seq = int(r, 0) ?? 0, hash = text(r, 1) ?? AuditRow.genesis
            if let anchor = int(r, 3), anchor > seq {
                seq = anchor
                hash = text(r, 4) ?? hash
            }
            // A restored copy continues above what its hub holds (Restore.swift).
            if let floor = int(r, 12), floor > seq {
                seq = floor
                hash = text(r, 13) ?? hash
            }
            lastSeq = seq
            lastHash = hash
            // Every stamp in the file is this device's own or one it adopted:
            // the clock takes the greatest, and never goes back.
            clock = HybridClock(last: max(clock.last, int(r, 2) ?? 0, int(r, 5) ?? 0))
            sync.cursor = int(r, 6) ?? 0
            sync.batches = int(r, 7) ?? 0
            sync.auditAckedThrough = int(r, 8) ?? 0
            sync.upgradeRequired = text(r, 9)
            storedVersion = int(r, 10)
            hygieneSettings.lastPassSeq = max(hygieneSettings.lastPassSeq, int(r, 11) ?? 0)
            sync.hubGeneration = int(r, 14)
            sync.hubRecoveryBatch = int(r, 15) ?? 0
            sync.ackedEvictedThrough = int(r, 16) ?? 0
            sync.hubLostThrough = int(r, 17) ?? 0
            sync.recoveryReport = text(r, 18)
            return false
        }
        // Another handle opened the file with a newer schema and migrated it:
        // this handle's tables and entries no longer match it.
        if let storedVersion, storedVersion != schema.version {
            throw .schema("another handle moved this store to schema version \(storedVersion); this handle has version \(schema.version): close it and open the store with the newer schema")
        }
    }
}
