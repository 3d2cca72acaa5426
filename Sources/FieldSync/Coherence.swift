// Several handles on one store file (two threads that each opened it, an app
// and `python -m fieldsync apply`, two processes): each handle keeps the next
// seq, the audit chain head, the clock and the sync progress in memory, and
// another connection may have moved any of them. So every write first catches
// up with the file: one `PRAGMA data_version` (which changes only when another
// connection commits), and a reread of that progress, one statement, only
// when it changed. Writes run in BEGIN IMMEDIATE, so what was reread stays
// true until their COMMIT.
import CSQLite

extension Store {
    static let dataVersion = PreparedSQL("PRAGMA data_version")

    /// A write transaction on a handle that is current with the file.
    func write<R>(_ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        try db.transaction { () throws(FieldSyncError) -> R in
            try catchUp()
            return try body()
        }
    }

    /// Rereads the progress other connections may have moved, if one has
    /// committed since this handle last looked. Also usable outside a
    /// transaction (stats): the reread is a single statement, so it sees one
    /// state of the file; a commit between the two reads only makes the next
    /// call reread again.
    func catchUp() throws(FieldSyncError) {
        let version = try db.scalar(Store.dataVersion)
        if version == seenDataVersion { return }
        try reloadProgress()
        seenDataVersion = version
    }

    /// The chain head (the newest audit row, or the anchor kept in fs_meta when
    /// older rows were evicted), the clock and the sync progress, in one read.
    static let progress = PreparedSQL("""
        SELECT h.audit_id, h.hash, h.hlc,
            (SELECT value FROM fs_meta WHERE key = 'anchor_seq'), (SELECT value FROM fs_meta WHERE key = 'anchor_hash'),
            (SELECT value FROM fs_meta WHERE key = 'hlc'), (SELECT value FROM fs_meta WHERE key = 'cursor'),
            (SELECT value FROM fs_meta WHERE key = 'batches'), (SELECT value FROM fs_meta WHERE key = 'audit_acked_through'),
            (SELECT value FROM fs_meta WHERE key = 'upgrade_required'), (SELECT value FROM fs_meta WHERE key = 'schema_version'),
            (SELECT value FROM fs_meta WHERE key = 'hygiene_pass_seq')
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
            return false
        }
        // Another handle opened the file with a newer schema and migrated it:
        // this handle's tables and entries no longer match it.
        if let storedVersion, storedVersion != schema.version {
            throw .schema("another handle moved this store to schema version \(storedVersion); this handle has version \(schema.version): close it and open the store with the newer schema")
        }
    }
}
